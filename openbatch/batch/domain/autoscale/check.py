"""What is wrong with a formula before it runs: syntax, unknown functions and methods, wrong
numbers of arguments, methods on something other than a service variable, assignments to
read-only variables or constants. These refuse the formula (``AutoScalingFormulaSyntaxError``)
instead of failing every evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from openbatch.batch.domain.autoscale import functions
from openbatch.batch.domain.autoscale import parser as p
from openbatch.batch.domain.autoscale.errors import SyntaxProblem
from openbatch.batch.domain.autoscale.names import resolve
from openbatch.batch.domain.autoscale.samples import METHODS
from openbatch.batch.domain.autoscale.values import TIMESTAMP_MEMBERS

# method -> (least, most) arguments
_METHOD_ARITY = {"GetSample": (1, 3), "GetSamplePercent": (1, 2), "GetSamplePeriod": (0, 0), "Count": (0, 0),
                 "HistoryBeginTime": (0, 0)}
_METHOD_NAMES = {m.lower(): m for m in METHODS}


@dataclass(frozen=True)
class Formula:
    """A formula that parsed and passed the checks, ready to evaluate."""

    text: str
    statements: tuple[p.Statement, ...]


class FormulaSyntaxError(Exception):
    def __init__(self, problems: list[SyntaxProblem]):
        super().__init__("; ".join(str(x) for x in problems))
        self.problems = problems


def _arity(node: p.Node, what: str, count: int, least: int, most: int | None) -> SyntaxProblem | None:
    if count < least or (most is not None and count > most):
        wanted = str(least) if least == most else (f"at least {least}" if most is None else f"{least} to {most}")
        return SyntaxProblem(node.line, node.col, f"{what} takes {wanted} arguments, not {count}.")
    return None


def _call(node: p.Call) -> SyntaxProblem | None:
    name = functions.lookup(node.name)
    if name is None:
        return SyntaxProblem(node.line, node.col, f"Unknown function '{node.name}'.")
    least, most, _ = functions.FUNCTIONS[name]
    return _arity(node, f"{name}()", len(node.args), least, most)


def _method(node: p.Method) -> SyntaxProblem | None:
    target = node.target
    if not isinstance(target, p.Name) or resolve(target.name).kind != "metric":
        return SyntaxProblem(node.line, node.col,
                             f"The method {node.name} applies to the read-only service variables only.")
    name = _METHOD_NAMES.get(node.name.lower())
    if name is None:
        return SyntaxProblem(node.line, node.col, f"Unknown method '{node.name}'.")
    return _arity(node, name, len(node.args), *_METHOD_ARITY[name])


def _node(node: p.Node) -> SyntaxProblem | None:
    if isinstance(node, p.Call):
        return _call(node)
    if isinstance(node, p.Method):
        return _method(node)
    if isinstance(node, p.Member) and node.name.lower() not in TIMESTAMP_MEMBERS:
        return SyntaxProblem(node.line, node.col,
                             f"Unknown member '{node.name}': a timestamp has {', '.join(TIMESTAMP_MEMBERS)}.")
    return None


def _children(node: p.Node) -> tuple[p.Node, ...]:
    if isinstance(node, (p.Call, p.VecLiteral)):
        return node.args if isinstance(node, p.Call) else node.items
    if isinstance(node, p.Method):
        return (node.target, *node.args)
    if isinstance(node, p.Member):
        return (node.target,)
    if isinstance(node, p.Unary):
        return (node.operand,)
    if isinstance(node, p.Binary):
        return (node.left, node.right)
    if isinstance(node, p.Conditional):
        return (node.test, node.then, node.otherwise)
    return ()


def _first_problem(node: p.Node) -> SyntaxProblem | None:
    stack = [node]
    while stack:
        current = stack.pop()
        problem = _node(current)
        if problem is not None:
            return problem
        stack.extend(reversed(_children(current)))
    return None


def _statement(statement: p.Statement) -> SyntaxProblem | None:
    target = statement.target
    if target is not None:
        meaning = resolve(target.name)
        if meaning.kind in ("metric", "constant"):
            return SyntaxProblem(target.line, target.col, f"{target.name} is read-only: it cannot be assigned.")
    return _first_problem(statement.expr)


def compile_formula(text: str) -> Formula:
    """Parse and check ``text``; FormulaSyntaxError lists every bad statement."""
    program = p.parse(text)
    problems = list(program.errors)
    for statement in program.statements:
        problem = _statement(statement)
        if problem is not None:
            problems.append(problem)
    if problems:
        problems.sort(key=lambda x: (x.line, x.col))
        raise FormulaSyntaxError(problems)
    return Formula(text, tuple(program.statements))
