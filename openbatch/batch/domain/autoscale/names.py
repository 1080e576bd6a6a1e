"""What a name in a formula means: a service variable, a constant or a user variable.

Service variables start with ``$`` and are matched without regard to case (Azure's own REST
reference writes ``$targetDedicatedNodes``). The settable ones are ``$TargetDedicatedNodes``
(alias ``$TargetDedicated``), ``$TargetLowPriorityNodes`` (alias ``$TargetLowPriority``) and
``$NodeDeallocationOption``; the read-only ones are the metrics of ``samples.METRICS`` (with the
old names ``$CurrentDedicated`` / ``$CurrentLowPriority``). ``TimeInterval_*`` are constants and
``requeue``/``terminate``/``taskcompletion``/``retaineddata`` the deallocation keywords. Any other
name is a user variable; its ``$`` is optional ("for user-defined variables, the dollar sign is
optional"), so ``$x`` and ``x`` are one variable, printed ``$x`` in the results.
"""

from __future__ import annotations

from dataclasses import dataclass

from openbatch.batch.domain.autoscale.samples import METRICS
from openbatch.batch.domain.autoscale.values import DEALLOCATION_OPTIONS, TIME_INTERVALS, Option, Span

DEDICATED = "$TargetDedicatedNodes"
LOW_PRIORITY = "$TargetLowPriorityNodes"
DEALLOCATION = "$NodeDeallocationOption"

# lower-cased name -> (canonical service variable, written with its alias)
_SETTABLE = {
    "$targetdedicatednodes": (DEDICATED, False), "$targetdedicated": (DEDICATED, True),
    "$targetlowprioritynodes": (LOW_PRIORITY, False), "$targetlowpriority": (LOW_PRIORITY, True),
    "$nodedeallocationoption": (DEALLOCATION, False),
}
_METRICS = {m.lower(): m for m in METRICS} | {
    "$currentdedicated": "$CurrentDedicatedNodes", "$currentlowpriority": "$CurrentLowPriorityNodes",
}
_INTERVALS = {k.lower(): v for k, v in TIME_INTERVALS.items()}
_OPTIONS = {o: Option(o) for o in DEALLOCATION_OPTIONS}


@dataclass(frozen=True, slots=True)
class Meaning:
    kind: str  # target | metric | constant | user
    name: str  # canonical name (user variables: without the $)
    alias: bool = False
    value: Span | Option | None = None


def resolve(name: str) -> Meaning:
    key = name.lower()
    if key in _SETTABLE:
        canonical, alias = _SETTABLE[key]
        return Meaning("target", canonical, alias)
    if key in _METRICS:
        return Meaning("metric", _METRICS[key])
    if key in _INTERVALS:
        return Meaning("constant", name, value=_INTERVALS[key])
    if key in _OPTIONS:
        return Meaning("constant", name, value=_OPTIONS[key])
    return Meaning("user", name.removeprefix("$"))
