"""SharedKey request signing, as the Azure Storage and Azure Batch SDKs compute it.

The server rebuilds the string-to-sign from the request it received and compares HMAC-SHA256
signatures in constant time. Clients differ in small ways (how an empty Content-Length is
signed, how the path is escaped, how x-ms-* headers are ordered), so the verifier tries the
few candidate strings a real SDK could have produced. Keys and signatures are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import cmp_to_key, lru_cache
from urllib.parse import unquote

from openbatch.common import clock
from openbatch.config import Account

_STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def sign(key: bytes, string_to_sign: str) -> str:
    """Base64 HMAC-SHA256 of ``string_to_sign`` (UTF-8) under ``key``."""
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_authorization(value: str) -> tuple[str, str, str] | None:
    """``"SharedKey acct:sig"`` -> ``("SharedKey", "acct", "sig")``; None when malformed."""
    scheme, _, rest = value.strip().partition(" ")
    account, sep, signature = rest.strip().partition(":")
    if not sep or not account or not signature:
        return None
    return scheme, account, signature


def matches(account: Account, signature: str, candidates: Iterable[str]) -> bool:
    """Whether ``signature`` is the signature of any candidate under any key of ``account``."""
    given = signature.encode("ascii", "replace")
    ok = False
    for candidate in candidates:
        for key in account.keys:
            # No early exit: the work done does not depend on which key matched.
            ok |= hmac.compare_digest(sign(key, candidate).encode("ascii"), given)
    return ok


# --- the signed request date ------------------------------------------------------------------

# How far a signed request's date may be from the server's clock. Azure Storage and Azure Batch
# both refuse requests older than 15 minutes ("Authorize with Shared Key", "Authenticate requests
# to the Azure Batch service"); the same bound is applied to dates in the future, so a signed
# request cannot be prepared now and replayed later.
MAX_CLOCK_SKEW = timedelta(minutes=15)
# Where each service reads the request date, in order of precedence: the service's own header wins
# over Date when both are sent. Both are covered by the signature (the x-ms-*/ocp-* canonical
# headers and the Date line of the standard header block).
BLOB_DATE_HEADERS = ("x-ms-date", "date")
BATCH_DATE_HEADERS = ("ocp-date", "date")


class RequestDateError(Exception):
    """A signed request whose date is missing, malformed or outside the allowed clock skew.

    ``detail`` is the text Azure puts in ``AuthenticationErrorDetail``.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_request_date(headers: Mapping[str, str], names: tuple[str, ...], now: datetime | None = None) -> datetime:
    """The signed date of a SharedKey request (``headers`` lower-case), or RequestDateError.

    The first of ``names`` the request carries is the date (an empty one counts as missing).
    """
    value = next((headers[name] for name in names if name in headers), "")
    if not value.strip():
        raise RequestDateError("Request date header not specified")
    when = clock.parse_rfc1123(value)
    if when is None:
        raise RequestDateError("The Date header in the request is incorrect.")
    current = now if now is not None else clock.real_now()
    if when < current - MAX_CLOCK_SKEW:
        raise RequestDateError(f"Request date header too old: '{clock.rfc1123(when)}'")
    if when > current + MAX_CLOCK_SKEW:
        raise RequestDateError(f"Request date header too far in the future: '{clock.rfc1123(when)}'")
    return when


def _standard_header_block(headers: Mapping[str, str], content_length: str) -> str:
    values = [content_length if name == "content-length" else headers.get(name, "") for name in _STANDARD_HEADERS]
    return "\n".join(values) + "\n"


# --- Blob (Storage) ---------------------------------------------------------------------------

# The Storage SDKs order x-ms-* headers with an invariant-culture collation, not by code point:
# level 0 ignores '-' and "'", level 4 breaks ties on them.  Weights below are that collation's
# (punctuation < digits < letters, case-insensitive); only their order matters.
_PUNCT = "!#$%&*.^_`|~+"
_LV4 = {"'": 0x8012, "-": 0x8212}


def _lv0(c: str) -> int:
    if c in _PUNCT:
        return 0x700 + _PUNCT.index(c)
    if "0" <= c <= "9":
        return 0xD00 + ord(c) - 0x30
    if c.isascii() and c.isalpha():
        return 0xE00 + ord(c.lower()) - 0x61
    return 0


def _collate(lhs: str, rhs: str) -> int:
    """Port of the SDK comparator: two levels, zero weights skipped, 0x1 marks the end."""
    levels = (_lv0, lambda c: _LV4.get(c, 0))
    level, i, j = 0, 0, 0
    while level < len(levels):
        if level == len(levels) - 1 and i != j:
            return -1 if i > j else 1
        w1 = levels[level](lhs[i]) if i < len(lhs) else 0x1
        w2 = levels[level](rhs[j]) if j < len(rhs) else 0x1
        if w1 == 0x1 and w2 == 0x1:
            i = j = 0
            level += 1
        elif w1 == w2:
            i, j = i + 1, j + 1
        elif w1 == 0:
            i += 1
        elif w2 == 0:
            j += 1
        else:
            return -1 if w1 < w2 else 1
    return 0


@lru_cache(maxsize=1024)
def _collated_order(names: tuple[str, ...]) -> tuple[int, ...]:
    """Positions of ``names`` in collated order (cached: requests repeat the same header sets)."""
    def compare(i: int, j: int) -> int:
        return _collate(names[i], names[j])

    return tuple(sorted(range(len(names)), key=cmp_to_key(compare)))


def _sorted_headers(items: list[tuple[str, str]], collated: bool) -> list[tuple[str, str]]:
    items = sorted(items)
    if collated:
        return [items[i] for i in _collated_order(tuple(k for k, _ in items))]
    return items


def collation_is_plain(names: Iterable[str]) -> bool:
    """Whether x-ms-* header names sort the same by code point and by the SDK collation (almost always)."""
    ordered = tuple(sorted(names))
    return _collated_order(ordered) == tuple(range(len(ordered)))


def blob_canonical_headers(headers: Mapping[str, str], collated: bool) -> str:
    # Names are signed lower-case (metadata names may arrive with their case kept).
    items = [(k.lower(), v) for k, v in headers.items() if k.startswith("x-ms-")]
    return "".join(f"{k}:{v.strip()}\n" for k, v in _sorted_headers(items, collated))


def blob_canonical_query(query: Iterable[tuple[str, str]]) -> str:
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        grouped.setdefault(name.lower(), []).append(value)
    return "".join(f"\n{name}:{','.join(sorted(grouped[name]))}" for name in sorted(grouped))


def blob_string_to_sign(
    method: str,
    headers: Mapping[str, str],
    account: str,
    path: str,
    query: Iterable[tuple[str, str]],
    *,
    collated: bool = False,
) -> str:
    """String-to-sign of Blob SharedKey (x-ms-version 2015-02-21 and later).

    ``headers`` has lower-case names; ``path`` is the URL path as sent (still %-escaped);
    ``query`` holds decoded (name, value) pairs.
    """
    length = headers.get("content-length", "")
    if length == "0":
        length = ""
    return (
        f"{method}\n"
        + _standard_header_block(headers, length)
        + blob_canonical_headers(headers, collated)
        + f"/{account}{path}"
        + blob_canonical_query(query)
    )


def blob_candidates(
    method: str, headers: Mapping[str, str], account: str, raw_path: str, query: list[tuple[str, str]]
) -> Iterator[str]:
    """The strings a Storage SDK may have signed for this request."""
    paths = dict.fromkeys([raw_path, unquote(raw_path)])
    orders = (False,) if collation_is_plain(k.lower() for k in headers if k.startswith("x-ms-")) else (True, False)
    for collated in orders:
        for path in paths:
            yield blob_string_to_sign(method, headers, account, path, query, collated=collated)


# --- Batch ------------------------------------------------------------------------------------


def batch_string_to_sign(
    method: str,
    headers: Mapping[str, str],
    account: str,
    path: str,
    query: Iterable[tuple[str, str]],
    *,
    content_length: str | None = None,
) -> str:
    """String-to-sign of Batch SharedKey as azure-batch 1.x-15.x build it.

    ``ocp-*`` headers sorted, then ``/{account}{path}``, then query parameters sorted by name
    with their first decoded value, empty values skipped.
    """
    length = headers.get("content-length", "") if content_length is None else content_length
    ocp = sorted((k, v) for k, v in headers.items() if "ocp-" in k and v)
    first: dict[str, str] = {}
    for name, value in query:
        first.setdefault(name, value)
    return (
        f"{method}\n"
        + _standard_header_block(headers, length)
        + "".join(f"{k}:{v}\n" for k, v in ocp)
        + f"/{account}{path}"
        + "".join(f"\n{k}:{first[k]}" for k in sorted(first) if first[k])
    )


def batch_candidates(
    method: str, headers: Mapping[str, str], account: str, raw_path: str, query: list[tuple[str, str]]
) -> Iterator[str]:
    """The strings an azure-batch SDK may have signed for this request."""
    lengths = [headers.get("content-length", "")]
    if lengths[0] in ("", "0"):
        # 15.x signs "0" for bodiless non-GET requests whether or not the header is sent.
        lengths = ["0", ""] if method not in ("GET", "HEAD") else ["", "0"]
    paths = dict.fromkeys([raw_path, raw_path.replace("%2F", "/").replace("%5C", "/"), unquote(raw_path)])
    for length in lengths:
        for path in paths:
            yield batch_string_to_sign(method, headers, account, path, query, content_length=length)
