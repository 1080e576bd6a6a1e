"""The operators of the autoscale formula language on its values (the Operations table).

    double op double        + - * /          double          (IEEE: 1/0 is Infinity, 0/0 NaN)
    doubleVec op double, double op doubleVec, doubleVec op doubleVec (same length)   + - * /
    timeinterval * double, double * timeinterval, timeinterval / double        timeinterval
    timeinterval +- timeinterval     timeinterval;   timestamp + timeinterval (either order)  timestamp
    timestamp - timestamp            timeinterval
    -double  !double  -timeinterval
    <, <=, ==, >=, >, != on two doubles, strings, timestamps or timeintervals      1 or 0
    &&, || on doubles (nonzero is true)                                              1 or 0

Beyond the table, where the meaning is plain: ``timestamp - timeinterval``, ``timeinterval /
timeinterval`` (a double), unary minus on a doubleVec, and ``==``/``!=`` on deallocation options.
Anything else is an evaluation error naming the operator and the types.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from openbatch.batch.domain.autoscale.errors import FormulaError
from openbatch.batch.domain.autoscale.values import Option, Span, Value, type_name


def _divide(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide,
}
_COMPARISON: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">=": operator.ge, ">": operator.gt,
}


def refuse(op: str, left: Value, right: Value | None = None) -> FormulaError:
    if right is None:
        return FormulaError(f"The operator {op} does not apply to a {type_name(left)}.")
    return FormulaError(f"The operator {op} does not apply to a {type_name(left)} and a {type_name(right)}.")


def _vectors(op: str, left: Value, right: Value) -> Value:
    fn = _ARITHMETIC[op]
    if isinstance(left, tuple) and isinstance(right, tuple):
        if len(left) != len(right):
            raise FormulaError(f"The operator {op} needs doubleVecs of one length, not {len(left)} and {len(right)}.")
        return tuple(fn(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, tuple) and isinstance(right, float):
        return tuple(fn(a, right) for a in left)
    if isinstance(left, float) and isinstance(right, tuple):
        return tuple(fn(left, b) for b in right)
    raise refuse(op, left, right)


def _times(op: str, left: Value, right: Value) -> Value:
    """The arithmetic with a timeinterval or a timestamp on either side."""
    if op in ("+", "-") and isinstance(left, Span) and isinstance(right, Span):
        return Span(left.ticks + right.ticks if op == "+" else left.ticks - right.ticks)
    if op == "*" and isinstance(left, Span) and isinstance(right, float) and math.isfinite(right):
        return Span(round(left.ticks * right))
    if op == "*" and isinstance(left, float) and isinstance(right, Span) and math.isfinite(left):
        return Span(round(left * right.ticks))
    if op == "/" and isinstance(left, Span) and isinstance(right, float) and right != 0 and math.isfinite(right):
        return Span(round(left.ticks / right))
    if op == "/" and isinstance(left, Span) and isinstance(right, Span):
        return _divide(float(left.ticks), float(right.ticks))
    if op == "+" and isinstance(left, datetime) and isinstance(right, Span):
        return left + right.delta()
    if op == "+" and isinstance(left, Span) and isinstance(right, datetime):
        return right + left.delta()
    if op == "-" and isinstance(left, datetime) and isinstance(right, Span):
        return left - right.delta()
    if op == "-" and isinstance(left, datetime) and isinstance(right, datetime):
        return Span.of(left - right)
    raise refuse(op, left, right)


def arithmetic(op: str, left: Value, right: Value) -> Value:
    if isinstance(left, float) and isinstance(right, float):
        return _ARITHMETIC[op](left, right)
    if isinstance(left, tuple) or isinstance(right, tuple):
        return _vectors(op, left, right)
    return _times(op, left, right)


def _comparable(left: Value, right: Value) -> bool:
    return any(isinstance(left, kind) and isinstance(right, kind) for kind in (float, str, datetime, Span))


def compare(op: str, left: Value, right: Value) -> float:
    if _comparable(left, right):
        return 1.0 if _COMPARISON[op](left, right) else 0.0
    if op in ("==", "!=") and isinstance(left, Option) and isinstance(right, Option):
        return 1.0 if (left == right) == (op == "==") else 0.0
    raise refuse(op, left, right)


def truth(op: str, value: Value) -> bool:
    """A double as a condition: nonzero is true."""
    if not isinstance(value, float):
        raise FormulaError(f"The operator {op} needs a double, not a {type_name(value)}.")
    return value != 0


def unary(op: str, value: Value) -> Value:
    if op == "!":
        return 0.0 if truth("!", value) else 1.0
    if isinstance(value, float):
        return -value if op == "-" else value
    if isinstance(value, Span):
        return Span(-value.ticks) if op == "-" else value
    if isinstance(value, tuple):
        return tuple(-v for v in value) if op == "-" else value
    raise refuse(op, value)


def binary(op: str, left: Value, right: Value) -> Value:
    if op in _ARITHMETIC:
        return arithmetic(op, left, right)
    return compare(op, left, right)
