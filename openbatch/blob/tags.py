"""Blob index tags: the tag rules, the tag expression language and the operations on tags.

Tags are at most 10 key/value pairs per blob (keys 1-128, values 0-256 characters of letters,
digits, space and ``+ - . / : = _``). Two places take an expression over them (Azure's "Manage and
find Azure Blob data with blob index tags"):

- Find Blobs by Tags (``where=``): comparisons ``"key" op 'value'`` with ``= > >= < <=`` joined by
  ``AND`` only, at most 10, several on one key only when they make a range, and (account-wide
  only) ``@container = 'name'``; a malformed one is 400 InvalidQueryParameterValue naming ``where``.
- ``x-ms-if-tags`` on the operations that take it: also ``<>``, ``OR`` and parentheses, no
  ``@container``; malformed is 400 InvalidHeaderValue, false is 412 ConditionNotMet.

Values compare as strings, byte by byte; a comparison on a tag the blob does not have is false.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from openbatch.blob.errors import BlobError, bad_header, bad_query

if TYPE_CHECKING:
    from openbatch.blob.service import Blobs
    from openbatch.common.conditions import Conditions

MAX_TAGS = 10
MAX_KEY, MAX_VALUE = 128, 256
MAX_COMPARISONS = 10
CONTAINER_KEY = "@container"
_TAG_TEXT = re.compile(r"[A-Za-z0-9 +\-./:=_]*")
_OPERATORS = (">=", "<=", "<>", "=", ">", "<")  # longest first
_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b, "<>": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}

Tags = dict[str, str]


# --- tags -------------------------------------------------------------------------------------------


def check_tags(tags: list[tuple[str, str]]) -> Tags:
    """A blob's tags as given (Set Blob Tags body, x-ms-tags): Azure's limits, no duplicate keys."""
    if len(tags) > MAX_TAGS:
        raise BlobError("TagsTooLarge", "The tags specified exceed the maximum permissible limit.")
    out: Tags = {}
    for key, value in tags:
        if not key:
            raise BlobError("EmptyTagName", "The name of one of the tag key-value pairs is empty.")
        if len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise BlobError("TagsTooLarge", "The tags specified exceed the maximum permissible limit.")
        if not (_TAG_TEXT.fullmatch(key) and _TAG_TEXT.fullmatch(value)):
            raise BlobError("InvalidTag", "The tags specified are invalid. It contains characters that are not "
                                          "permitted.")
        if key in out:
            raise BlobError("DuplicateTagNames", "The tags specified contain duplicate names.")
        out[key] = value
    return out


def parse_header(value: str | None) -> Tags | None:
    """x-ms-tags: ``key=value&...`` URL-encoded (``+`` is a space, as in a query string)."""
    if value is None:
        return None
    pairs = []
    for item in value.split("&"):
        if not item:
            continue
        key, _, val = item.partition("=")
        try:
            pairs.append((unquote_plus(key, errors="strict"), unquote_plus(val, errors="strict")))
        except UnicodeDecodeError:
            raise bad_header("x-ms-tags", value[:128]) from None
    return check_tags(pairs)


def copy_source_tags(option: str | None, tags_header: str | None) -> bool:
    """x-ms-copy-source-tag-option: COPY (the copy takes the source's tags) or REPLACE (x-ms-tags, the
    default); COPY with x-ms-tags too is 400 BothUserTagsAndSourceTagsCopyPresentException."""
    if option is None or option.strip().upper() == "REPLACE":
        return False
    if option.strip().upper() != "COPY":
        raise bad_header("x-ms-copy-source-tag-option", option[:32])
    if tags_header is not None:
        raise BlobError("BothUserTagsAndSourceTagsCopyPresentException",
                        "x-ms-tags header must not be present with x-ms-copy-source-tag-option as COPY.")
    return True


# --- expressions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    key: str
    op: str
    value: str

    def holds(self, tags: Tags) -> bool:
        have = tags.get(self.key)
        return have is not None and _COMPARE[self.op](have, self.value)


@dataclass(frozen=True)
class Junction:
    kind: str  # "and" | "or"
    parts: tuple[Expression, ...]

    def holds(self, tags: Tags) -> bool:
        test = all if self.kind == "and" else any
        return test(p.holds(tags) for p in self.parts)


Expression = Comparison | Junction


class _Syntax(Exception):
    """The expression is not well formed (the caller answers with its own error)."""


class _Parser:
    """Recursive descent over the expression text; ``conditions`` is x-ms-if-tags' richer form."""

    def __init__(self, text: str, conditions: bool) -> None:
        self.text = text
        self.pos = 0
        self.conditions = conditions
        self.comparisons: list[Comparison] = []

    def parse(self) -> Expression:
        expr = self._or()
        self._space()
        if self.pos != len(self.text):
            raise _Syntax(f"unexpected text at {self.pos}")
        return expr

    def _space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self, word: str) -> bool:
        self._space()
        end = self.pos + len(word)
        if self.text[self.pos:end].lower() == word and (end == len(self.text) or not self.text[end].isalnum()):
            self.pos = end
            return True
        return False

    def _or(self) -> Expression:
        parts = [self._and()]
        while self._keyword("or"):
            if not self.conditions:
                raise _Syntax("OR is not allowed")
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Junction("or", tuple(parts))

    def _and(self) -> Expression:
        parts = [self._primary()]
        while self._keyword("and"):
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else Junction("and", tuple(parts))

    def _primary(self) -> Expression:
        self._space()
        if self.text.startswith("(", self.pos) and self.conditions:
            self.pos += 1
            inner = self._or()
            self._space()
            if not self.text.startswith(")", self.pos):
                raise _Syntax("a ( is not closed")
            self.pos += 1
            return inner
        return self._comparison()

    def _comparison(self) -> Comparison:
        key = self._key()
        self._space()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None or (op == "<>" and not self.conditions):
            raise _Syntax(f"no comparison operator at {self.pos}")
        self.pos += len(op)
        self._space()
        if not self.text.startswith("'", self.pos):
            raise _Syntax("a value must be in single quotes")
        comparison = Comparison(key, op, self._quoted("'"))
        self.comparisons.append(comparison)
        return comparison

    def _key(self) -> str:
        if self.text.startswith('"', self.pos):
            return self._quoted('"')
        match = re.compile(r"@?[A-Za-z0-9_\-./:+]+").match(self.text, self.pos)
        if match is None:
            raise _Syntax(f"no tag key at {self.pos}")
        self.pos = match.end()
        return match.group()

    def _quoted(self, quote: str) -> str:
        self.pos += 1
        out = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise _Syntax(f"a {quote} is not closed")
            out.append(self.text[self.pos:end])
            self.pos = end + 1
            if not self.text.startswith(quote, self.pos):  # a doubled quote is a literal one
                return "".join(out)
            out.append(quote)
            self.pos += 1


def _check_comparisons(comparisons: list[Comparison], conditions: bool, account_wide: bool) -> None:
    if len(comparisons) > MAX_COMPARISONS:
        raise _Syntax(f"at most {MAX_COMPARISONS} comparisons")
    by_key: dict[str, list[str]] = {}
    for c in comparisons:
        if c.key == CONTAINER_KEY:
            if conditions or not account_wide or c.op != "=":
                raise _Syntax("@container is only for = in an account-wide search")
        elif not (0 < len(c.key) <= MAX_KEY and len(c.value) <= MAX_VALUE and _TAG_TEXT.fullmatch(c.key)
                  and _TAG_TEXT.fullmatch(c.value)):
            raise _Syntax(f"{c.key!r} is not a tag key or {c.value!r} not a tag value")
        elif c.key.startswith("@"):
            raise _Syntax(f"{c.key} is not a tag key")
        by_key.setdefault(c.key, []).append(c.op)
    if conditions:
        return
    for key, ops in by_key.items():
        lower = sum(op in (">", ">=") for op in ops)
        upper = sum(op in ("<", "<=") for op in ops)
        if len(ops) > 1 and ("=" in ops or lower > 1 or upper > 1):
            raise _Syntax(f"several conditions on {key!r} must make a range")
    if not any(c.key != CONTAINER_KEY for c in comparisons):
        raise _Syntax("no tag is compared")


@dataclass(frozen=True)
class Search:
    """A parsed Find Blobs by Tags expression."""

    text: str
    expression: Expression
    comparisons: tuple[Comparison, ...]

    @property
    def container(self) -> str | None:
        """The container an account-wide search is limited to (@container)."""
        return next((c.value for c in self.comparisons if c.key == CONTAINER_KEY), None)

    @property
    def driver(self) -> Comparison:
        """The comparison the store looks up by index: an equality if there is one."""
        tagged = [c for c in self.comparisons if c.key != CONTAINER_KEY]
        return next((c for c in tagged if c.op == "="), tagged[0])

    def matches(self, tags: Tags) -> bool:
        return all(c.holds(tags) for c in self.comparisons if c.key != CONTAINER_KEY)

    def shown(self, tags: Tags) -> Tags:
        """The tags a match shows: those the expression names."""
        names = {c.key for c in self.comparisons}
        return {k: v for k, v in tags.items() if k in names}


def parse_search(text: str | None, *, account_wide: bool) -> Search:
    """A ``where`` expression (400 InvalidQueryParameterValue when malformed or missing)."""
    if not text:
        raise BlobError("MissingRequiredQueryParameter", QueryParameterName="where")
    parser = _Parser(text, conditions=False)
    try:
        expression = parser.parse()
        _check_comparisons(parser.comparisons, False, account_wide)
    except _Syntax as exc:
        raise bad_query("where", text[:256], f"The tag expression is not valid: {exc}.") from None
    return Search(text, expression, tuple(parser.comparisons))


def parse_condition(text: str) -> Expression:
    """An x-ms-if-tags expression (400 InvalidHeaderValue when malformed)."""
    parser = _Parser(text, conditions=True)
    try:
        expression = parser.parse()
        _check_comparisons(parser.comparisons, True, False)
    except _Syntax as exc:
        raise bad_header("x-ms-if-tags", text[:256], f"The tag condition is not valid: {exc}.") from None
    return expression


def check_condition(if_tags: str | None, tags: Callable[[], Tags], code: str = "ConditionNotMet") -> None:
    """x-ms-if-tags against a blob's tags (read only when there is a condition): 412 when false."""
    if if_tags is None:
        return
    expression = parse_condition(if_tags)
    if not expression.holds(tags()):
        raise BlobError(code)


# --- operations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    container: str
    name: str
    tags: Tags


class BlobTagging:
    """Get / Set Blob Tags and Find Blobs by Tags over a :class:`Blobs` service."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def get(self, account: str, container: str, name: str, cond: Conditions, stamp: str = "") -> Tags:
        """Get Blob Tags (of the blob, or of the snapshot or version ``stamp`` names)."""
        blob = self.blobs.blob(account, container, name, cond, stamp=stamp)
        return self.blobs.meta.tags(blob.id)

    def set(self, account: str, container: str, name: str, tags: list[tuple[str, str]], cond: Conditions,
            stamp: str = "") -> None:
        """Set Blob Tags: replace them all; the blob's ETag and Last-Modified do not change."""
        checked = check_tags(tags)
        with self.blobs.meta.tx():
            blob = self.blobs.blob(account, container, name, cond, stamp=stamp, read=False)
            self.blobs.meta.set_tags(blob, checked)

    def find(self, account: str, container: str | None, search: Search, marker: tuple[str, str],
             limit: int) -> tuple[list[Found], tuple[str, str] | None]:
        """Find Blobs by Tags (in ``container``, or account-wide): live base blobs whose tags match,
        by container and name, from ``marker``; and where the next page starts."""
        scope = container if container is not None else search.container
        if container is not None:
            self.blobs.container(account, container)
        found: list[Found] = []
        cursor = marker
        while True:
            batch = self.blobs.meta.find_tagged(account, scope, search.driver.key, search.driver.op,
                                                search.driver.value, cursor, 1000)
            for container_name, name, tags in batch:
                if not search.matches(tags):
                    continue
                if len(found) == limit:
                    return found, (container_name, name)
                found.append(Found(container_name, name, search.shown(tags)))
            if len(batch) < 1000:
                return found, None
            cursor = (batch[-1][0], batch[-1][1] + "\x00")
