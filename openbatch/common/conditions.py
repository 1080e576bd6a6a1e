"""HTTP conditional requests (ETag and date preconditions), protocol neutral.

Both the Blob and the Batch endpoints accept ``If-Match`` / ``If-None-Match`` (with ``*``) /
``If-Modified-Since`` / ``If-Unmodified-Since``. This module parses them and evaluates them
against a resource's current ETag and Last-Modified time; the caller maps the outcome to its
protocol's status and error code. Blob requests also carry two conditions of their own, kept here
with the others so that one value travels with the request: ``x-ms-lease-id`` (checked by
``blob/leases.py``) and ``x-ms-if-tags`` (a tag expression, checked by ``blob/tags.py``).

Outcomes: ``"ok"``, ``"not-modified"`` (a read whose If-None-Match / If-Modified-Since failed:
304) and ``"precondition-failed"`` (412).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from openbatch.common.clock import parse_rfc1123

Outcome = Literal["ok", "not-modified", "precondition-failed"]

OK: Outcome = "ok"
NOT_MODIFIED: Outcome = "not-modified"
PRECONDITION_FAILED: Outcome = "precondition-failed"


def normalize_etag(value: str) -> str:
    """``W/"0x8D..."`` / ``"0x8D..."`` / ``0x8D...`` -> ``0x8D...``."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    return value


def parse_etag_list(value: str) -> tuple[str, ...]:
    """A comma separated list of (possibly quoted) ETags, or ``("*",)``."""
    tags: list[str] = []
    for part in value.split(","):
        tag = normalize_etag(part)
        if tag:
            tags.append(tag)
    return tuple(tags)


@dataclass(frozen=True)
class Conditions:
    """The conditional headers of one request (each None when absent)."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None
    lease_id: str | None = None  # Blob: x-ms-lease-id (x-ms-source-lease-id for a copy source)
    if_tags: str | None = None  # Blob: x-ms-if-tags (x-ms-source-if-tags for a copy source)

    @classmethod
    def from_headers(cls, get: Callable[[str], str | None], prefix: str = "") -> Conditions:
        """Read ``{prefix}if-match`` etc. through ``get`` (lower-case header names).

        ``prefix`` is ``"x-ms-source-"`` for the source conditions of a copy. An unparseable
        date is ignored, as HTTP prescribes.
        """
        match = get(prefix + "if-match")
        none_match = get(prefix + "if-none-match")
        modified = get(prefix + "if-modified-since")
        unmodified = get(prefix + "if-unmodified-since")
        lease_id = get((prefix or "x-ms-") + "lease-id")
        if_tags = get((prefix or "x-ms-") + "if-tags")
        if match is None and none_match is None and modified is None and unmodified is None and lease_id is None \
                and if_tags is None:
            return _EMPTY
        return cls(
            if_match=parse_etag_list(match) if match is not None else None,
            if_none_match=parse_etag_list(none_match) if none_match is not None else None,
            if_modified_since=parse_rfc1123(modified) if modified else None,
            if_unmodified_since=parse_rfc1123(unmodified) if unmodified else None,
            lease_id=lease_id,
            if_tags=if_tags,
        )

    @property
    def empty(self) -> bool:
        return self == _EMPTY

    @property
    def none_match_any(self) -> bool:
        """``If-None-Match: *``: the request must not overwrite an existing resource."""
        return self.if_none_match is not None and "*" in self.if_none_match


_EMPTY = Conditions()


def _truncate(dt: datetime) -> datetime:
    # HTTP dates have a one-second resolution.
    return dt.replace(microsecond=0)


def evaluate(cond: Conditions, etag: str | None, last_modified: datetime | None, *, read: bool) -> Outcome:
    """Evaluate ``cond`` against a resource (``etag`` None: the resource does not exist).

    ``read`` is True for GET/HEAD, where failed If-None-Match / If-Modified-Since mean 304;
    for writes every failed condition means 412.
    """
    if cond.empty:
        return OK
    current = normalize_etag(etag) if etag is not None else None
    if cond.if_match is not None and (current is None or ("*" not in cond.if_match and current not in cond.if_match)):
        return PRECONDITION_FAILED
    lm = _truncate(last_modified) if last_modified is not None and current is not None else None
    if cond.if_unmodified_since is not None and lm is not None and lm > cond.if_unmodified_since:
        return PRECONDITION_FAILED
    failed = NOT_MODIFIED if read else PRECONDITION_FAILED
    if cond.if_none_match is not None and current is not None and (
        "*" in cond.if_none_match or current in cond.if_none_match
    ):
        return failed
    if cond.if_modified_since is not None and lm is not None and lm <= cond.if_modified_since:
        return failed
    return OK
