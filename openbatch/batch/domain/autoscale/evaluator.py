"""Running a checked formula: statements in order, then the results Azure reports.

The settable service variables start at the pool's current values (``$TargetDedicatedNodes`` is
the current target until the formula assigns it; ``$NodeDeallocationOption`` is ``requeue``).
When both a target and its alias are assigned, the full name wins (documented). Read-only service
variables used as plain values give their latest sample (the pool's node counts and slots per
node their exact current value); their methods read the sample history.

The first failing statement ends the run: ``AutoScaleRun.error`` says where and why, and the pool
keeps its size ("no change is made to the pool size"); ``stop()`` ends it without an error.

``results`` is ``$TargetDedicatedNodes=..;$TargetLowPriorityNodes=..;$NodeDeallocationOption=..``
followed by every user variable assigned, by name (the documented sample output lists
``$curTime;$isWeekday;$isWorkingWeekdayHour;$workHours`` in that order), each as ``$name=value``.
The new targets are the assigned doubles rounded down; a target must be a number from 0 to the
pool size limit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openbatch.batch.domain.autoscale import functions, operators
from openbatch.batch.domain.autoscale import parser as p
from openbatch.batch.domain.autoscale.check import Formula
from openbatch.batch.domain.autoscale.errors import FormulaError, RunError
from openbatch.batch.domain.autoscale.names import DEALLOCATION, DEDICATED, LOW_PRIORITY, resolve
from openbatch.batch.domain.autoscale.samples import METHODS, History
from openbatch.batch.domain.autoscale.values import (
    DEALLOCATION_OPTIONS,
    Option,
    Value,
    format_double,
    format_value,
    member,
    type_name,
)


@dataclass
class Environment:
    """What a formula sees of its pool."""

    now: datetime
    history: History
    dedicated: int  # the pool's current targets
    low_priority: int
    current: Mapping[str, float] = field(default_factory=dict)  # exact current values of some metrics
    max_nodes: int = 1000
    rand: Callable[[], float] = random.random


@dataclass
class Outcome:
    results: str
    dedicated: int
    low_priority: int
    option: str
    error: RunError | None = None


class _Run:
    def __init__(self, env: Environment):
        self.env = env
        self.ctx = functions.Context(env.now, env.rand)
        self.now = env.now.timestamp()
        self.user: dict[str, Value] = {}
        self.targets: dict[tuple[str, bool], Value] = {}  # (canonical, alias?) -> value
        self.where: dict[str, p.Node] = {}  # target -> its last assignment
        self.option = "requeue"

    # --- statements ----------------------------------------------------------------------------

    def run(self, formula: Formula) -> Outcome:
        try:
            try:
                for statement in formula.statements:
                    self.statement(statement)
            except functions.Stop:
                pass
            dedicated, low = self.new_targets()
        except RunError as error:
            return Outcome(self.results(), self.env.dedicated, self.env.low_priority, self.option, error)
        return Outcome(self.results(), dedicated, low, self.option)

    def statement(self, statement: p.Statement) -> None:
        value = self.value(statement.expr)
        target = statement.target
        if target is None:
            return
        meaning = resolve(target.name)
        if meaning.kind == "user":
            self.user[meaning.name] = value
        elif meaning.name == DEALLOCATION:
            self.option = self.deallocation(target, value)
        elif not isinstance(value, float):
            raise self.fail(target, FormulaError(f"{meaning.name} takes a double, not a {type_name(value)}."))
        else:
            self.targets[(meaning.name, meaning.alias)] = value
            self.where[meaning.name] = target

    def deallocation(self, target: p.Node, value: Value) -> str:
        name = value.name if isinstance(value, Option) else value.lower() if isinstance(value, str) else ""
        if name not in DEALLOCATION_OPTIONS:
            shown = format_value(value) if isinstance(value, str) else type_name(value)
            raise self.fail(target, FormulaError(
                f"$NodeDeallocationOption takes one of {', '.join(DEALLOCATION_OPTIONS)}, not {shown}."))
        return name

    def target(self, name: str, alias: bool = False) -> Value:
        for key in ((name, alias), (name, not alias)):
            if key in self.targets:
                return self.targets[key]
        return float(self.env.dedicated if name == DEDICATED else self.env.low_priority)

    def new_targets(self) -> tuple[int, int]:
        dedicated, low = self.count(DEDICATED), self.count(LOW_PRIORITY)
        if dedicated + low > self.env.max_nodes:
            last = max((self.where[n] for n in (DEDICATED, LOW_PRIORITY) if n in self.where),
                       key=lambda node: (node.line, node.col))
            raise self.fail(last, FormulaError(f"A pool may have at most {self.env.max_nodes} nodes (dedicated and "
                                               f"low-priority together) on openbatch, not {dedicated + low}."))
        return dedicated, low

    def count(self, name: str) -> int:
        value = self.target(name)
        assert isinstance(value, float)
        if not math.isfinite(value) or value < 0 or value >= self.env.max_nodes + 1:
            problem = FormulaError(f"{name} must be a number from 0 to {self.env.max_nodes} (the most nodes a pool "
                                   f"may have on openbatch), not {format_double(value)}.")
            raise self.fail(self.where[name], problem)
        return int(value)

    def results(self) -> str:
        parts = [f"{DEDICATED}={format_value(self.target(DEDICATED))}",
                 f"{LOW_PRIORITY}={format_value(self.target(LOW_PRIORITY))}",
                 f"{DEALLOCATION}={self.option}"]
        for name in sorted(self.user, key=lambda n: (n.lower(), n)):
            parts.append(f"${name}={format_value(self.user[name])}")
        return ";".join(parts)

    @staticmethod
    def fail(node: p.Node, error: FormulaError) -> RunError:
        return RunError(error.code, error.summary, node.line, node.col, str(error))

    # --- expressions ---------------------------------------------------------------------------

    def value(self, node: p.Node) -> Value:
        try:
            return self.evaluate(node)
        except FormulaError as error:
            raise self.fail(node, error) from None

    def evaluate(self, node: p.Node) -> Value:
        handler = _HANDLERS.get(type(node))
        if handler is None:  # pragma: no cover - every node type has a handler
            raise FormulaError(f"Cannot evaluate {type(node).__name__}.")
        return handler(self, node)

    def name(self, node: p.Name) -> Value:
        meaning = resolve(node.name)
        if meaning.value is not None:
            return meaning.value
        if meaning.kind == "target":
            return Option(self.option) if meaning.name == DEALLOCATION else self.target(meaning.name, meaning.alias)
        if meaning.kind == "metric":
            if meaning.name in self.env.current:
                return float(self.env.current[meaning.name])
            return self.env.history.series(meaning.name).latest()
        if meaning.name not in self.user:
            raise FormulaError(f"The variable {node.name} is not defined.")
        return self.user[meaning.name]

    def unary(self, node: p.Unary) -> Value:
        return operators.unary(node.op, self.value(node.operand))

    def binary(self, node: p.Binary) -> Value:
        left = self.value(node.left)
        if node.op in ("&&", "||"):
            decided = operators.truth(node.op, left)
            if decided == (node.op == "||"):
                return 1.0 if decided else 0.0
            return 1.0 if operators.truth(node.op, self.value(node.right)) else 0.0
        return operators.binary(node.op, left, self.value(node.right))

    def conditional(self, node: p.Conditional) -> Value:
        chosen = node.then if operators.truth("?:", self.value(node.test)) else node.otherwise
        return self.value(chosen)

    def call(self, node: p.Call) -> Value:
        name = functions.lookup(node.name)
        assert name is not None  # checked when the formula was compiled
        return functions.call(name, [self.value(a) for a in node.args], self.ctx)

    def method(self, node: p.Method) -> Value:
        assert isinstance(node.target, p.Name)  # checked when the formula was compiled
        metric = resolve(node.target.name).name
        args = [self.value(a) for a in node.args]
        method = next(m for m in METHODS if m.lower() == node.name.lower())
        result: Value = self.env.history.series(metric).call(method, self.now, args)
        return result

    def member(self, node: p.Member) -> Value:
        target = self.value(node.target)
        if not isinstance(target, datetime):
            raise FormulaError(f"Only a timestamp has a member {node.name}, not a {type_name(target)}.")
        return member(target, node.name.lower())

    def vector(self, node: p.VecLiteral) -> Value:
        return tuple(functions.flatten("[]", [self.value(item) for item in node.items]))


_HANDLERS: dict[type, Callable[[_Run, Any], Value]] = {
    p.Number: lambda run, node: node.value,
    p.Text: lambda run, node: node.value,
    p.Name: _Run.name,
    p.Unary: _Run.unary,
    p.Binary: _Run.binary,
    p.Conditional: _Run.conditional,
    p.Call: _Run.call,
    p.Method: _Run.method,
    p.Member: _Run.member,
    p.VecLiteral: _Run.vector,
}


def evaluate(formula: Formula, env: Environment) -> Outcome:
    """Run ``formula``; the outcome carries the results string, the new targets and any error."""
    return _Run(env).run(formula)
