"""The predefined functions of the autoscale formula language (the Functions table of
learn.microsoft.com "Create a formula to automatically scale compute nodes in a Batch pool").

A ``doubleVecList`` argument is any comma-separated mix of doubles and doubleVecs, flattened
before use: ``avg(v, 7)`` with ``v = [1,2,3]`` is ``avg(1,2,3,7)``. ``lg``, ``ln``, ``log``,
``ceil``, ``floor`` and ``round`` of a single double give a double, of anything else the
component-wise doubleVec. Arithmetic is IEEE (as .NET's): ``ln(0)`` is ``-Infinity``, ``ln(-1)``
``NaN``; an empty list where a value is needed is an evaluation error.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from openbatch.batch.domain.autoscale.errors import FormulaError
from openbatch.batch.domain.autoscale.values import Value, format_double, type_name
from openbatch.common import clock


class Stop(Exception):
    """``stop()``: the evaluation ends here; what was assigned so far stands."""


@dataclass(frozen=True, slots=True)
class Context:
    now: datetime
    rand: Callable[[], float] = random.random


def flatten(name: str, args: list[Value]) -> list[float]:
    out: list[float] = []
    for arg in args:
        if isinstance(arg, float):
            out.append(arg)
        elif isinstance(arg, tuple):
            out.extend(arg)
        else:
            raise FormulaError(f"{name}() takes doubles and doubleVecs, not a {type_name(arg)}.")
    return out


def _nonempty(name: str, args: list[Value]) -> list[float]:
    values = flatten(name, args)
    if not values:
        raise FormulaError(f"{name}() of an empty list has no value.")
    return values


def _log(fn: Callable[[float], float]) -> Callable[[float], float]:
    def apply(x: float) -> float:
        if math.isnan(x) or x < 0:
            return math.nan
        if x == 0:
            return -math.inf
        return x if math.isinf(x) else fn(x)

    return apply


def _round_half_away(x: float) -> float:
    if not math.isfinite(x):
        return x
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _component_wise(fn: Callable[[float], float]) -> Callable[[str, list[Value], Context], Value]:
    def apply(name: str, args: list[Value], ctx: Context) -> Value:
        if len(args) == 1 and isinstance(args[0], float):
            return fn(args[0])
        return tuple(fn(x) for x in flatten(name, args))

    return apply


def _avg(name: str, args: list[Value], ctx: Context) -> Value:
    values = _nonempty(name, args)
    return math.fsum(values) / len(values)


def _std(name: str, args: list[Value], ctx: Context) -> Value:
    values = _nonempty(name, args)
    if len(values) < 2:
        raise FormulaError("std() is the sample standard deviation: it needs at least two values.")
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _percentile(name: str, args: list[Value], ctx: Context) -> Value:
    values = sorted(_nonempty(name, args[:1]))
    p = args[1]
    if not isinstance(p, float) or not 0 <= p <= 100:
        shown = format_double(p) if isinstance(p, float) else type_name(p)
        raise FormulaError(f"percentile() takes a percentage from 0 to 100, not {shown}.")
    rank = max(1, math.ceil(p / 100 * len(values)))  # the nearest-rank element
    return values[rank - 1]


def _val(name: str, args: list[Value], ctx: Context) -> Value:
    vector, index = args
    if isinstance(vector, float):
        vector = (vector,)
    if not isinstance(vector, tuple) or not isinstance(index, float):
        raise FormulaError(f"val() takes a doubleVec and an index, not a {type_name(vector)} and a {type_name(index)}.")
    if not math.isfinite(index) or index != int(index) or not 0 <= index < len(vector):
        raise FormulaError(f"val(): the index {format_double(index)} is outside the vector (length {len(vector)}).")
    return vector[int(index)]


def _time(name: str, args: list[Value], ctx: Context) -> Value:
    if not args or args[0] == "":
        return ctx.now
    text = args[0]
    if not isinstance(text, str):
        raise FormulaError(f"time() takes a W3C-DTF or RFC 1123 date string, not a {type_name(text)}.")
    stamp = clock.parse_iso8601(text) or clock.parse_rfc1123(text)
    if stamp is None:
        raise FormulaError(f"time(): '{text}' is not a W3C-DTF or RFC 1123 date.")
    return stamp


def _stop(name: str, args: list[Value], ctx: Context) -> Value:
    raise Stop


def _reduce(fn: Callable[[list[float]], float], empty_ok: bool = False) -> Callable[[str, list[Value], Context], Value]:
    def apply(name: str, args: list[Value], ctx: Context) -> Value:
        return fn(flatten(name, args) if empty_ok else _nonempty(name, args))

    return apply


Impl = Callable[[str, list[Value], Context], Value]

# name -> (least arguments, most arguments or None for a list, implementation)
FUNCTIONS: dict[str, tuple[int, int | None, Impl]] = {
    "avg": (1, None, _avg),
    "ceil": (1, None, _component_wise(lambda x: float(math.ceil(x)) if math.isfinite(x) else x)),
    "floor": (1, None, _component_wise(lambda x: float(math.floor(x)) if math.isfinite(x) else x)),
    "len": (0, None, _reduce(lambda v: float(len(v)), empty_ok=True)),
    "lg": (1, None, _component_wise(_log(math.log2))),
    "ln": (1, None, _component_wise(_log(math.log))),
    "log": (1, None, _component_wise(_log(math.log10))),
    "max": (1, None, _reduce(max)),
    "min": (1, None, _reduce(min)),
    "norm": (1, None, _reduce(lambda v: math.sqrt(math.fsum(x * x for x in v)))),
    "percentile": (2, 2, _percentile),
    "rand": (0, 0, lambda name, args, ctx: ctx.rand()),
    "range": (1, None, _reduce(lambda v: max(v) - min(v))),
    "round": (1, None, _component_wise(_round_half_away)),
    "std": (1, None, _std),
    "stop": (0, 0, _stop),
    "sum": (0, None, _reduce(math.fsum, empty_ok=True)),
    "time": (0, 1, _time),
    "val": (2, 2, _val),
}


def lookup(name: str) -> str | None:
    """The function's canonical (lower-case) name, or None if there is no such function."""
    key = name.lower()
    return key if key in FUNCTIONS else None


def call(name: str, args: list[Value], ctx: Context) -> Value:
    return FUNCTIONS[name][2](name, args, ctx)

