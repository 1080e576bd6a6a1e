"""Strict percent-decoding of URL path segments and query values, shared by both endpoints.

``urllib.parse.unquote`` keeps a malformed escape (``%ZZ``, a ``%`` at the end) as literal text
and, by default, replaces bytes that are not UTF-8 with U+FFFD: either way a name other than the
one the client meant. Here both are errors, so each endpoint can answer 400 with its own code.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_MALFORMED = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadEscape(ValueError):
    """A malformed percent escape, or escapes that do not decode as UTF-8."""


def unquote_strict(text: str) -> str:
    """``text`` percent-decoded as UTF-8; BadEscape when that is not possible."""
    if "%" not in text:
        return text
    if _MALFORMED.search(text):
        raise BadEscape("a '%' that does not start a two-digit hexadecimal escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadEscape("percent escapes that are not UTF-8") from exc
