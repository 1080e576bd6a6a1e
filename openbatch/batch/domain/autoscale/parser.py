"""Statements and expressions of an autoscale formula: a recursive-descent parser to a small AST.

A formula is statements separated by semicolons (a trailing one is optional, empty ones are
skipped): ``name = expression`` assigns, a bare expression is evaluated for its effect (Azure's own
example ``$RunningTasks.GetSample(10 * TimeInterval_Second, 0 * TimeInterval_Second, 100);``).
Precedence, loosest first, as in C (the language Azure's operators follow):

    ?:  (right to left)   ||   &&   == !=   < <= > >=   + -   * /   unary - + !   . member/method

A statement nests at most ``MAX_DEPTH`` levels (parentheses, calls, conditionals, unary operators
and each operator of a chain count), so that neither parsing nor evaluation can exhaust the stack.

A syntax error spoils only its statement: parsing resumes after the next ``;``, so every bad
statement is reported, each with its line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openbatch.batch.domain.autoscale.errors import SyntaxProblem
from openbatch.batch.domain.autoscale.lexer import Token, tokenize

MAX_STATEMENTS = 100  # "can include up to 100 statements that are separated by semicolons"
MAX_DEPTH = 64  # nested parentheses, calls, conditionals, unary and chained operators in one statement


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Number(Node):
    value: float


@dataclass(frozen=True, slots=True)
class Text(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class VecLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    test: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``name(args)``; the position is the opening parenthesis."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Member(Node):
    """``target.name`` (a timestamp's ``hour`` ...)."""

    target: Node
    name: str


@dataclass(frozen=True, slots=True)
class Method(Node):
    """``target.name(args)`` on a service variable; the position is the opening parenthesis."""

    target: Node
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Statement(Node):
    target: Name | None  # None: an expression statement
    expr: Node


@dataclass
class Program:
    statements: list[Statement] = field(default_factory=list)
    errors: list[SyntaxProblem] = field(default_factory=list)


# binary operators by precedence (higher binds tighter); all are left-associative
_PRECEDENCE = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}
_UNARY = ("-", "+", "!")


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0
        self.depth = 0  # how deep the statement being parsed nests (bounded: the evaluator recurses)

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def take(self) -> Token:
        token = self.tok
        if token.kind != "end":
            self.i += 1
        return token

    def expect(self, op: str) -> Token:
        if not self.at(op):
            raise self.unexpected(f"'{op}'")
        return self.take()

    def deeper(self, levels: int = 1) -> None:
        self.depth += levels
        if self.depth > MAX_DEPTH:
            raise SyntaxProblem(self.tok.line, self.tok.col,
                                f"The expression nests too deeply (at most {MAX_DEPTH} levels).")

    def unexpected(self, wanted: str) -> SyntaxProblem:
        token = self.tok
        found = "the end of the formula" if token.kind == "end" else f"'{token.text}'"
        return SyntaxProblem(token.line, token.col, f"Expected {wanted} but found {found}.")

    # --- statements ----------------------------------------------------------------------------

    def program(self) -> Program:
        out = Program()
        while self.tok.kind != "end":
            if self.at(";"):
                self.take()
                continue
            start = self.i
            self.depth = 0
            try:
                out.statements.append(self.statement())
                if not self.at(";") and self.tok.kind != "end":
                    raise self.unexpected("';'")
            except SyntaxProblem as problem:
                out.errors.append(problem)
                self.skip_statement(start)
        if len(out.statements) > MAX_STATEMENTS:
            extra = out.statements[MAX_STATEMENTS]
            out.errors.append(SyntaxProblem(extra.line, extra.col,
                                            f"A formula can have at most {MAX_STATEMENTS} statements."))
        return out

    def skip_statement(self, start: int) -> None:
        self.i = max(self.i, start + 1)
        while self.tok.kind != "end" and not self.at(";"):
            self.take()

    def statement(self) -> Statement:
        first = self.tok
        nxt = self.tokens[self.i + 1]
        if first.kind == "name" and nxt.kind == "op" and nxt.text == "=":
            self.i += 2
            return Statement(first.line, first.col, Name(first.line, first.col, first.text), self.expression())
        return Statement(first.line, first.col, None, self.expression())

    # --- expressions ---------------------------------------------------------------------------

    def expression(self) -> Node:
        self.deeper()
        test = self.binary(1)
        if self.at("?"):
            mark = self.take()
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            test = Conditional(mark.line, mark.col, test, then, otherwise)
        self.depth -= 1
        return test

    def binary(self, least: int) -> Node:
        """Operators binding at least as tight as ``least`` (precedence climbing)."""
        left = self.unary()
        chained = 0
        while self.tok.kind == "op" and _PRECEDENCE.get(self.tok.text, 0) >= least:
            op = self.take()
            self.deeper()  # a left-deep chain nests one level per operator
            chained += 1
            left = Binary(op.line, op.col, op.text, left, self.binary(_PRECEDENCE[op.text] + 1))
        self.depth -= chained
        return left

    def unary(self) -> Node:
        if self.at(*_UNARY):
            op = self.take()
            self.deeper()
            node = Unary(op.line, op.col, op.text, self.unary())
            self.depth -= 1
            return node
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        chained = 0
        while self.at("."):
            self.take()
            self.deeper()
            chained += 1
            name = self.tok
            if name.kind != "name" or name.text.startswith("$"):
                raise self.unexpected("a member or method name")
            self.take()
            if self.at("("):
                paren = self.tok
                node = Method(paren.line, paren.col, node, name.text, self.arguments())
            else:
                node = Member(name.line, name.col, node, name.text)
        self.depth -= chained
        return node

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expression())
            while self.at(","):
                self.take()
                args.append(self.expression())
        self.expect(")")
        return tuple(args)

    def primary(self) -> Node:
        token = self.tok
        if token.kind == "number":
            self.take()
            return Number(token.line, token.col, float(token.text))
        if token.kind == "string":
            self.take()
            return Text(token.line, token.col, token.text[1:-1])
        if token.kind == "name":
            self.take()
            if self.at("("):
                paren = self.tok
                return Call(paren.line, paren.col, token.text, self.arguments())
            return Name(token.line, token.col, token.text)
        if self.at("("):
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        if self.at("["):
            return self.vector()
        raise self.unexpected("a value")

    def vector(self) -> Node:
        open_ = self.expect("[")
        items: list[Node] = []
        if not self.at("]"):
            items.append(self.expression())
            while self.at(","):
                self.take()
                items.append(self.expression())
        self.expect("]")
        return VecLiteral(open_.line, open_.col, tuple(items))


def parse(text: str) -> Program:
    """The statements of ``text`` and the syntax errors found (one per bad statement at most)."""
    try:
        tokens = tokenize(text)
    except SyntaxProblem as problem:
        return Program(errors=[problem])
    return _Parser(tokens).program()
