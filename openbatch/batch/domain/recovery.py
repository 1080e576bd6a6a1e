"""What a server restart means for what was in flight: pure rules, applied once at engine start.

A server restart is a reboot of every node: processes that were running are gone, so tasks that
were running or preparing go back to active with requeueCount + 1 (exactly once: the requeue is
committed before anything runs again), nodes boot again (their start task reruns), and entities
caught half-way through an engine-driven change finish it.
"""

from __future__ import annotations

from typing import Any

from openbatch.batch.domain import execution as ex
from openbatch.batch.domain import states

Doc = dict[str, Any]

_T = states.TaskState
_N = states.NodeState

# What the engine does with a node after a restart.
BOOT, RESTART, REMOVE, REIMAGE = "boot", "restart", "remove", "reimage"


def recover_task(doc: Doc, job_id: str, now: str) -> bool:
    """Requeue a task that was running or preparing; True if the document changed."""
    if doc.get("state") not in (_T.RUNNING.value, _T.PREPARING.value):
        return False
    states.TASK.apply(doc, _T.ACTIVE, states.Context(now, reason="recovery", details={"jobId": job_id}))
    ex.requeue(doc, now)
    return True


def recover_node(doc: Doc, now: str) -> str:
    """Reset a node's run-time counters; the action to take (BOOT, RESTART, REIMAGE or REMOVE)."""
    doc["runningTasksCount"] = 0
    doc["runningTaskSlotsCount"] = 0
    state = doc.get("state")
    if state == _N.LEAVING_POOL.value:
        return REMOVE
    if state in (_N.CREATING.value, _N.STARTING.value):
        return BOOT
    if state == _N.REIMAGING.value:
        return REIMAGE
    if state != _N.REBOOTING.value and states.NODE.allowed(doc, _N.REBOOTING):
        states.NODE.apply(doc, _N.REBOOTING, states.Context(now, reason="requeue"))
    return RESTART
