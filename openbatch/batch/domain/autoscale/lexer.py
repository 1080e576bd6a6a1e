"""Tokens of an autoscale formula, each with the line and column (1-based) Azure's messages quote.

Numbers (``5``, ``0.7``, ``.5``, ``1e3``), strings in double (or single) quotes, identifiers
(service variables start with ``$``; so may user variables), the operators of the Operations table
(``+ - * / ! && || < <= == != >= > ? :``), ``=``, ``( ) [ ] , . ;``. Line breaks are white space;
``//`` comments run to the end of the line (the documented examples use them) and ``/* */``
comments are taken too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openbatch.batch.domain.autoscale.errors import SyntaxProblem


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number | string | name | op | end
    text: str
    line: int
    col: int


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n\f\v]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<open_comment>/\*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"[^"\n]*"|'[^'\n]*')
  | (?P<open_string>["'])
  | (?P<name>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||<=|>=|==|!=|[-+*/!<>=?:()\[\],.;])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with an ``end`` token; SyntaxProblem at the first bad character."""
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        col = pos - line_start + 1
        if found is None:
            raise SyntaxProblem(line, col, f"Unexpected character '{text[pos]}'.")
        kind = found.lastgroup or ""
        value = found.group()
        if kind == "open_comment":
            raise SyntaxProblem(line, col, "The comment is not closed with */.")
        if kind == "open_string":
            raise SyntaxProblem(line, col, "The string is not closed.")
        if kind not in ("space", "comment"):
            tokens.append(Token(kind, value, line, col))
        breaks = value.count("\n")
        if breaks:
            line += breaks
            line_start = pos + value.rindex("\n") + 1
        pos = found.end()
    tokens.append(Token("end", "", line, pos - line_start + 1))
    return tokens
