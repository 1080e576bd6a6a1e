"""OData ``$filter`` and ``$select`` for the Batch list operations.

Entities are held as dicts in the modern wire shape (camelCase), so a filter is evaluated
directly on those dicts.  ``parse_filter`` parses the text once into a small syntax tree and
compiles it to nested closures: evaluating a filter over a page of documents never walks the
tree again.

Grammar (OData v3, as Azure Batch accepts it; keywords are case-insensitive)::

    expr       := or
    or         := and ('or' and)*
    and        := unary ('and' unary)*
    unary      := 'not' unary | primary
    primary    := '(' expr ')' | call [cmp-op bool] | operand cmp-op operand
    call       := ('startswith' | 'endswith' | 'substringof' | 'contains') '(' args ')'
    cmp-op     := eq | ne | gt | ge | lt | le
    operand    := property-path | literal
    literal    := 'string' (quote doubled to escape) | integer | decimal | true | false | null
                | DateTime'2024-01-01T00:00:00Z' | DateTimeOffset'...' | bare ISO-8601 date-time

Semantics: a missing property is null (``eq null`` is true, ordering comparisons are false);
values of enumerated properties (``state``, ``result``, ``allocationState`` ...) compare
case-insensitively as Azure does; other strings compare case-sensitively; date-time literals
compare as instants against the ISO-8601 strings held in the documents.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

__all__ = [
    "ALWAYS",
    "ODataError",
    "Filter",
    "Select",
    "apply_select",
    "parse_filter",
    "parse_select",
    "JOB_FILTER_PROPERTIES",
    "JOB_PREP_RELEASE_FILTER_PROPERTIES",
    "JOB_SCHEDULE_FILTER_PROPERTIES",
    "JOBS_IN_SCHEDULE_FILTER_PROPERTIES",
    "NODE_FILE_FILTER_PROPERTIES",
    "NODE_FILTER_PROPERTIES",
    "POOL_FILTER_PROPERTIES",
    "POOL_NODE_COUNTS_FILTER_PROPERTIES",
    "POOL_USAGE_METRICS_FILTER_PROPERTIES",
    "SUPPORTED_IMAGE_FILTER_PROPERTIES",
    "TASK_FILE_FILTER_PROPERTIES",
    "TASK_FILTER_PROPERTIES",
]


class ODataError(ValueError):
    """An invalid ``$filter`` / ``$select`` clause (400 InvalidQueryParameterValue)."""


# --------------------------------------------------------------------------------------------
# Property sets Azure documents per list operation ("OData filters in Azure Batch"), as
# property path -> type ("String", "DateTime", "Int", "Boolean").  They are Collections of
# property names, so they can be passed straight to ``parse_filter(text, properties=...)``;
# the types let the parser reject literals of the wrong type and accept a quoted date-time.
# Entries marked "openbatch" are extensions beyond the documented set.
# --------------------------------------------------------------------------------------------

_S, _D, _I, _B = "String", "DateTime", "Int", "Boolean"

POOL_FILTER_PROPERTIES: Mapping[str, str] = {
    "id": _S,
    "state": _S,
    "stateTransitionTime": _D,
    "allocationState": _S,
    "allocationStateTransitionTime": _D,
    "creationTime": _D,
    "enableAutoScale": _B,
    "lastModified": _D,
    "vmSize": _S,
    "enableInterNodeCommunication": _B,
    "displayName": _S,  # openbatch
}

JOB_FILTER_PROPERTIES: Mapping[str, str] = {
    "id": _S,
    "state": _S,
    "stateTransitionTime": _D,
    "creationTime": _D,
    "lastModified": _D,
    "executionInfo/startTime": _D,
    "executionInfo/endTime": _D,
    "executionInfo/poolId": _S,
    "priority": _I,  # openbatch
    "displayName": _S,  # openbatch
}

JOBS_IN_SCHEDULE_FILTER_PROPERTIES: Mapping[str, str] = {k: v for k, v in JOB_FILTER_PROPERTIES.items()}

JOB_SCHEDULE_FILTER_PROPERTIES: Mapping[str, str] = {
    "id": _S,
    "state": _S,
    "stateTransitionTime": _D,
    "creationTime": _D,
    "lastModified": _D,
    "executionInfo/endTime": _D,
    "schedule/doNotRunUntil": _D,
    "schedule/doNotRunAfter": _D,
    "displayName": _S,  # openbatch
}

TASK_FILTER_PROPERTIES: Mapping[str, str] = {
    "id": _S,
    "state": _S,
    "stateTransitionTime": _D,
    "creationTime": _D,
    "lastModified": _D,  # documented (misspelt) as lastModifiedTime, accepted as an alias
    "executionInfo/startTime": _D,
    "executionInfo/endTime": _D,
    "executionInfo/exitCode": _I,
    "executionInfo/result": _S,
    "executionInfo/retryCount": _I,  # openbatch
    "executionInfo/requeueCount": _I,  # openbatch
    "executionInfo/failureInfo/category": _S,  # openbatch
    "executionInfo/failureInfo/code": _S,  # openbatch
    "nodeInfo/nodeId": _S,  # openbatch
    "nodeInfo/poolId": _S,  # openbatch
    "displayName": _S,  # openbatch
    "requiredSlots": _I,  # openbatch
}

NODE_FILTER_PROPERTIES: Mapping[str, str] = {
    "id": _S,  # openbatch
    "state": _S,
    "schedulingState": _S,  # openbatch
    "stateTransitionTime": _D,
    "lastBootTime": _D,
    "allocationTime": _D,
    "isDedicated": _B,  # openbatch
    "startTaskInfo/state": _S,
    "startTaskInfo/result": _S,
    "startTaskInfo/exitCode": _I,
    "startTaskInfo/startTime": _D,
    "startTaskInfo/endTime": _D,
}

TASK_FILE_FILTER_PROPERTIES: Mapping[str, str] = {"name": _S}
NODE_FILE_FILTER_PROPERTIES: Mapping[str, str] = {"name": _S}

SUPPORTED_IMAGE_FILTER_PROPERTIES: Mapping[str, str] = {
    "osType": _S,
    "verificationType": _S,
    "nodeAgentSKUId": _S,
}

POOL_NODE_COUNTS_FILTER_PROPERTIES: Mapping[str, str] = {"poolId": _S}

POOL_USAGE_METRICS_FILTER_PROPERTIES: Mapping[str, str] = {"poolId": _S}

JOB_PREP_RELEASE_FILTER_PROPERTIES: Mapping[str, str] = {
    "poolId": _S,
    "nodeId": _S,
    **{
        f"{info}/{prop}": typ
        for info in ("jobPreparationTaskExecutionInfo", "jobReleaseTaskExecutionInfo")
        for prop, typ in (("state", _S), ("startTime", _D), ("endTime", _D), ("exitCode", _I), ("result", _S))
    },
}

# Misspellings / older spellings in Azure's own documentation, accepted everywhere.
_PROPERTY_ALIASES: Mapping[str, str] = {"lastModifiedTime": "lastModified"}

# Last path segments whose values are Azure enums: compared case-insensitively.
_ENUM_SEGMENTS = frozenset(
    {
        "state",
        "previousState",
        "allocationState",
        "schedulingState",
        "result",
        "osType",
        "verificationType",
        "category",
        "taskState",
        "status",
    }
)


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<dt>(?i:datetime(?:offset)?)'(?P<dtval>[^']*)')
  | (?P<str>'(?:[^']|'')*')
  | (?P<badstr>'.*)
  | (?P<bare_dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?P<numsuffix>[LlMmDdFf])?
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<path>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)

_CMP_OPS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("startswith", "endswith", "substringof", "contains")
_KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null", *_CMP_OPS})

Literal: TypeAlias = str | int | float | bool | datetime | None


@dataclass(frozen=True)
class _Token:
    kind: str  # "kw", "path", "lit", "(", ")", ",", "end"
    text: str
    pos: int
    value: Literal = None


def _parse_datetime(text: str) -> datetime | None:
    """An aware datetime from ISO-8601 text (any fraction length, 'Z' or offset); None if invalid."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _tokenize(text: str) -> Iterator[_Token]:
    pos, end = 0, len(text)
    while pos < end:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ODataError(f"Invalid $filter: unexpected character {text[pos]!r} at position {pos}")
        kind, start, pos = m.lastgroup, m.start(), m.end()
        raw = m.group()
        if kind == "ws":
            continue
        if kind == "badstr":
            raise ODataError(f"Invalid $filter: unterminated string literal at position {start}")
        if kind in ("dt", "bare_dt"):
            literal = m.group("dtval") if kind == "dt" else raw
            parsed = _parse_datetime(literal)
            if parsed is None:
                raise ODataError(f"Invalid $filter: {raw[:100]!r} at position {start} is not a valid date-time")
            yield _Token("lit", raw, start, parsed)
        elif kind == "str":
            yield _Token("lit", raw, start, raw[1:-1].replace("''", "'"))
        elif kind in ("num", "numsuffix"):
            number = m.group("num")
            is_int = re.fullmatch(r"-?\d+", number) is not None and m.group("numsuffix") in (None, "L", "l")
            yield _Token("lit", raw, start, int(number) if is_int else float(number))
        elif kind == "path":
            lowered = raw.lower()
            if lowered in _KEYWORDS:
                value: Literal = {"true": True, "false": False}.get(lowered)
                yield _Token("lit" if lowered in ("true", "false", "null") else "kw", lowered, start, value)
            else:
                yield _Token("path", raw, start)
        else:
            yield _Token(raw, raw, start)
    yield _Token("end", "", end)


# --------------------------------------------------------------------------------------------
# Syntax tree (built once per filter text, then compiled to closures)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cmp:
    path: str
    op: str
    value: Literal


@dataclass(frozen=True)
class _Call:
    name: str  # startswith / endswith / contains
    path: str
    value: str


@dataclass(frozen=True)
class _Bool:
    op: str  # "and" / "or"
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    item: _Node


_Node: TypeAlias = _Cmp | _Call | _Bool | _Not

_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


# Nesting (parentheses and ``not``) the parser follows; deeper is refused, like the recursion
# limit of Microsoft's OData parser, before Python's own recursion limit could be reached.
MAX_DEPTH = 100


def _shown(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


class _Parser:
    def __init__(self, text: str, properties: Collection[str] | None) -> None:
        self.text = text
        self.shown = _shown(text)
        self.tokens = list(_tokenize(text))
        self.i = 0
        self.depth = 0
        self.properties = properties
        self.types: Mapping[str, str] = properties if isinstance(properties, Mapping) else {}
        self.canonical: dict[str, str] | None = (
            {p.lower(): p for p in properties} if properties is not None else None
        )

    # -- token helpers ------------------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: _Token | None = None) -> ODataError:
        tok = tok or self.tok
        where = "at end of input" if tok.kind == "end" else f"at position {tok.pos} ({tok.text[:100]!r})"
        return ODataError(f"Invalid $filter {self.shown}: {message} {where}")

    def expect(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.advance()

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "kw" and self.tok.text == word

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> _Node:
        node = self.parse_or()
        if self.tok.kind != "end":
            raise self.error("unexpected token")
        return node

    def parse_or(self) -> _Node:
        items = [self.parse_and()]
        while self.is_kw("or"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else _Bool("or", tuple(items))

    def parse_and(self) -> _Node:
        items = [self.parse_unary()]
        while self.is_kw("and"):
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else _Bool("and", tuple(items))

    def nest(self) -> None:
        """One level deeper (a ``not`` or a parenthesis); the caller undoes it when done."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression is nested more than {MAX_DEPTH} levels deep")

    def parse_unary(self) -> _Node:
        if self.is_kw("not"):
            self.nest()
            self.advance()
            node: _Node = _Not(self.parse_unary())
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> _Node:
        tok = self.tok
        if tok.kind == "(":
            self.nest()
            self.advance()
            node = self.parse_or()
            self.expect(")", "')'")
            self.depth -= 1
            return node
        if tok.kind == "path" and tok.text.lower() in _FUNCTIONS and self.tokens[self.i + 1].kind == "(":
            return self.parse_call()
        return self.parse_comparison()

    def parse_operand(self) -> tuple[str, str | None, Literal]:
        tok = self.tok
        if tok.kind == "path":
            self.advance()
            return "path", self.resolve(tok), None
        if tok.kind == "lit":
            self.advance()
            return "lit", None, tok.value
        raise self.error("expected a property name or a literal")

    def parse_comparison(self) -> _Node:
        left_kind, left_path, left_value = self.parse_operand()
        op_tok = self.tok
        if not (op_tok.kind == "kw" and op_tok.text in _CMP_OPS):
            raise self.error("expected a comparison operator (eq, ne, gt, ge, lt, le)")
        self.advance()
        right_kind, right_path, right_value = self.parse_operand()
        op = op_tok.text
        if left_kind == "path" and right_kind == "lit":
            assert left_path is not None
            return _Cmp(left_path, op, self.coerce(left_path, right_value, op_tok))
        if left_kind == "lit" and right_kind == "path":
            assert right_path is not None
            return _Cmp(right_path, _FLIPPED[op], self.coerce(right_path, left_value, op_tok))
        raise self.error("a comparison needs one property and one literal", op_tok)

    def parse_call(self) -> _Node:
        name_tok = self.advance()
        name = name_tok.text.lower()
        self.expect("(", "'('")
        first = self.parse_operand()
        self.expect(",", "','")
        second = self.parse_operand()
        self.expect(")", "')'")
        # substringof('x', prop) takes its arguments the other way round.
        prop, needle = (second, first) if name == "substringof" else (first, second)
        if prop[0] != "path" or needle[0] != "lit" or not isinstance(needle[2], str):
            raise self.error(f"{name} expects a property and a string literal", name_tok)
        assert prop[1] is not None
        node: _Node = _Call("contains" if name == "substringof" else name, prop[1], needle[2])
        if self.tok.kind == "kw" and self.tok.text in ("eq", "ne"):
            op = self.advance().text
            flag = self.tok
            if flag.kind != "lit" or not isinstance(flag.value, bool):
                raise self.error(f"{name}(...) can only be compared with true or false")
            self.advance()
            if flag.value != (op == "eq"):
                node = _Not(node)
        return node

    # -- property names and literal types -----------------------------------------------------
    def resolve(self, tok: _Token) -> str:
        path = _PROPERTY_ALIASES.get(tok.text, tok.text)
        if self.canonical is None:
            return path
        canonical = self.canonical.get(path.lower())
        if canonical is None:
            raise ODataError(
                f"Invalid $filter {self.shown}: property {tok.text[:100]!r} (position {tok.pos}) "
                "cannot be used in a filter for this operation"
            )
        return canonical

    def coerce(self, path: str, value: Literal, op_tok: _Token) -> Literal:
        expected = self.types.get(path)
        if value is None or expected is None:
            return value
        if expected == "DateTime":
            if isinstance(value, str):
                parsed = _parse_datetime(value)
                if parsed is not None:
                    return parsed
            if isinstance(value, datetime):
                return value
        elif expected == "Int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif expected == "Boolean":
            if isinstance(value, bool):
                return value
        elif isinstance(value, str):
            return value
        raise self.error(f"property {path!r} is of type {expected}; the literal has the wrong type", op_tok)


# --------------------------------------------------------------------------------------------
# Compilation to closures
# --------------------------------------------------------------------------------------------

Predicate: TypeAlias = Callable[[Mapping[str, Any]], bool]
_Getter: TypeAlias = Callable[[Mapping[str, Any]], Any]

_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def _getter(path: str) -> _Getter:
    keys = tuple(path.split("/"))
    if len(keys) == 1:
        key = keys[0]

        def get_top(doc: Mapping[str, Any]) -> Any:
            return doc.get(key)

        return get_top

    def get_nested(doc: Mapping[str, Any]) -> Any:
        value: Any = doc
        for key in keys:
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(key)
            if value is None:
                return None
        return value

    return get_nested


def _is_enum(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in _ENUM_SEGMENTS


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        return _parse_datetime(value)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_lower_str(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def _compile_null(get: _Getter, op: str) -> Predicate:
    if op == "eq":
        return lambda doc: get(doc) is None
    if op == "ne":
        return lambda doc: get(doc) is not None
    return lambda doc: False


def _converter(path: str, value: Literal) -> tuple[Callable[[Any], Any], Literal]:
    """How to read a document value so it compares with ``value`` (None when incomparable)."""
    if isinstance(value, bool):
        return _as_bool, value
    if isinstance(value, int | float):
        return _as_number, value
    if isinstance(value, datetime):
        return _as_datetime, value
    assert isinstance(value, str)
    if _is_enum(path):
        return _as_lower_str, value.lower()
    return _as_str, value


def _compile_cmp(node: _Cmp) -> Predicate:
    get = _getter(node.path)
    if node.value is None:
        return _compile_null(get, node.op)
    convert, literal = _converter(node.path, node.value)
    fn = _OPS[node.op]
    # A missing or incomparable value is null: "ne" holds, everything else does not.
    missing = node.op == "ne"
    if node.op == "eq" and convert is _as_lower_str and "/" not in node.path:
        key = node.path

        def enum_eq(doc: Mapping[str, Any]) -> bool:  # the hot path: state eq 'active'
            value = doc.get(key)
            return isinstance(value, str) and value.lower() == literal

        return enum_eq

    def compare(doc: Mapping[str, Any]) -> bool:
        value = convert(get(doc))
        if value is None:
            return missing
        return fn(value, literal)

    return compare


def _compile_call(node: _Call) -> Predicate:
    get = _getter(node.path)
    enum = _is_enum(node.path)
    needle = node.value.lower() if enum else node.value

    def read(doc: Mapping[str, Any]) -> str | None:
        value = get(doc)
        if not isinstance(value, str):
            return None
        return value.lower() if enum else value

    if node.name == "startswith":
        return lambda doc: (v := read(doc)) is not None and v.startswith(needle)
    if node.name == "endswith":
        return lambda doc: (v := read(doc)) is not None and v.endswith(needle)
    return lambda doc: (v := read(doc)) is not None and needle in v


def _compile(node: _Node) -> Predicate:
    if isinstance(node, _Cmp):
        return _compile_cmp(node)
    if isinstance(node, _Call):
        return _compile_call(node)
    if isinstance(node, _Not):
        inner = _compile(node.item)
        return lambda doc: not inner(doc)
    parts = tuple(_compile(item) for item in node.items)
    if node.op == "and":
        if len(parts) == 2:
            a, b = parts
            return lambda doc: a(doc) and b(doc)
        return lambda doc: all(p(doc) for p in parts)
    if len(parts) == 2:
        a, b = parts
        return lambda doc: a(doc) or b(doc)
    return lambda doc: any(p(doc) for p in parts)


def _conjuncts(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, _Bool) and node.op == "and":
        return tuple(c for item in node.items for c in _conjuncts(item))
    return (node,)


def _paths(node: _Node) -> Iterator[str]:
    if isinstance(node, _Cmp | _Call):
        yield node.path
    elif isinstance(node, _Not):
        yield from _paths(node.item)
    else:
        for item in node.items:
            yield from _paths(item)


def _match_all(doc: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Filter:
    """A compiled ``$filter``: call it with a document to test it."""

    text: str
    predicate: Predicate = field(repr=False, compare=False)
    properties: frozenset[str] = frozenset()
    _equalities: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __call__(self, doc: Mapping[str, Any]) -> bool:
        return self.predicate(doc)

    def equalities(self) -> dict[str, str]:
        """Top-level AND-ed ``prop eq 'literal'`` terms, for pre-filtering on an indexed column.

        Every document the filter accepts satisfies all of them.  Values of enumerated
        properties (``state`` ...) are lower-cased, as those compare case-insensitively.
        """
        return dict(self._equalities)

    @property
    def matches_all(self) -> bool:
        return self.predicate is _match_all


ALWAYS = Filter("", _match_all)


def parse_filter(text: str, properties: Collection[str] | None = None) -> Filter:
    """Parse and compile a ``$filter`` clause; raises ODataError when it is invalid.

    ``properties`` restricts (case-insensitively) the property paths that may be used; a
    Mapping of path -> type ("String", "DateTime", "Int", "Boolean"), such as the
    ``*_FILTER_PROPERTIES`` constants, also checks the literals' types.  An empty clause
    matches everything.
    """
    if not text or not text.strip():
        return ALWAYS
    node = _Parser(text, properties).parse()
    equalities: dict[str, str] = {}
    for term in _conjuncts(node):
        if isinstance(term, _Cmp) and term.op == "eq" and isinstance(term.value, str):
            value = term.value.lower() if _is_enum(term.path) else term.value
            equalities.setdefault(term.path, value)
    return Filter(text, _compile(node), frozenset(_paths(node)), tuple(equalities.items()))


# --------------------------------------------------------------------------------------------
# $select
# --------------------------------------------------------------------------------------------

SelectTree: TypeAlias = Mapping[str, "SelectTree | None"]  # None: the whole value

_SELECT_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Select:
    """A parsed ``$select``: ``tree`` maps each selected name to its sub-selection (None: all)."""

    paths: tuple[str, ...]
    tree: SelectTree | None = field(default=None, compare=False)

    @property
    def selects_all(self) -> bool:
        return self.tree is None


def _build_tree(paths: Collection[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        parts = path.split("/")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part in node and node[part] is None:
                break  # an ancestor is already selected whole
            if last:
                node[part] = None
            else:
                node = node.setdefault(part, {})
    return tree


def parse_select(text: str) -> Select:
    """Parse a ``$select`` clause: comma-separated property paths, nested with '/'.

    ``*`` (or an empty clause) selects everything.  Raises ODataError when malformed.
    """
    items = [item.strip() for item in (text or "").split(",")]
    if items == [""] or "*" in items:
        return Select(("*",), None)
    for item in items:
        if not _SELECT_PATH_RE.fullmatch(item):
            raise ODataError(f"Invalid $select {_shown(text)}: {item[:100]!r} is not a property path")
    paths = tuple(dict.fromkeys(items))
    return Select(paths, _build_tree(paths))


def _select_value(value: Any, tree: SelectTree) -> Any:
    if isinstance(value, Mapping):
        return _select_mapping(value, tree)
    if isinstance(value, list):
        return [_select_value(item, tree) for item in value]
    return value


def _select_mapping(doc: Mapping[str, Any], tree: SelectTree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sub in tree.items():
        if name not in doc:
            continue
        value = doc[name]
        out[name] = value if sub is None else _select_value(value, sub)
    return out


def apply_select(doc: Mapping[str, Any], select: Select) -> dict[str, Any]:
    """A copy of ``doc`` keeping only the selected (possibly nested) properties.

    Properties a document does not have are simply absent; keys starting with ``odata.``
    are always kept.  A path through a list applies to each element of the list.
    """
    if select.tree is None:
        return dict(doc)
    out = _select_mapping(doc, select.tree)
    for key, value in doc.items():
        if key.startswith("odata."):
            out[key] = value
    return out
