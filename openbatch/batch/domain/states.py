"""Every Batch entity state, and the only way to change one: a ``(from, to) -> handler`` table.

A transition is pure: the handler updates the entity document (a dict in the modern wire shape)
and returns the instructions that must follow (kill a process, run a start task, ...). The engine
performs them afterwards. An impossible transition raises ``InvalidTransition`` with the entity's
recent history, so a bug shows where the entity came from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar

from openbatch.batch.domain import instructions as ins


class PoolState(StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"


class AllocationState(StrEnum):
    STEADY = "steady"
    RESIZING = "resizing"
    STOPPING = "stopping"


class NodeState(StrEnum):
    CREATING = "creating"
    STARTING = "starting"
    WAITING_FOR_START_TASK = "waitingforstarttask"
    START_TASK_FAILED = "starttaskfailed"
    IDLE = "idle"
    RUNNING = "running"
    OFFLINE = "offline"
    REBOOTING = "rebooting"
    REIMAGING = "reimaging"
    UNUSABLE = "unusable"
    LEAVING_POOL = "leavingpool"
    UNKNOWN = "unknown"
    PREEMPTED = "preempted"


class SchedulingState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class StartTaskState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"


class JobState(StrEnum):
    ACTIVE = "active"
    DISABLING = "disabling"
    DISABLED = "disabled"
    ENABLING = "enabling"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    DELETING = "deleting"


class TaskState(StrEnum):
    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"


class JobScheduleState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    DISABLED = "disabled"
    TERMINATING = "terminating"
    DELETING = "deleting"


class CertificateState(StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"
    DELETE_FAILED = "deletefailed"


# Node states from which the node can take tasks (when scheduling is enabled).
SCHEDULABLE_NODE_STATES = frozenset({NodeState.IDLE, NodeState.RUNNING})


@dataclass(frozen=True)
class Context:
    """What a transition may need to know: the time, why it happens, and free-form details."""

    now: str
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[dict[str, Any], Context], list[ins.Instruction]]
S = TypeVar("S", bound=Enum)

_HISTORY_LEN = 6


class InvalidTransition(RuntimeError):
    """A transition the table does not allow: a bug in the caller, never a client mistake."""

    def __init__(self, kind: str, entity_id: str, frm: str, to: str, history: list[tuple[str, str, str]]):
        self.kind, self.entity_id, self.frm, self.to, self.history = kind, entity_id, frm, to, history
        steps = "; ".join(f"{a}->{b} at {t}" for a, b, t in history) or "none recorded"
        super().__init__(f"{kind} {entity_id!r}: no transition {frm} -> {to} (recent: {steps})")


def _none(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return []


class StateMachine(Generic[S]):
    """The transition table of one entity kind."""

    def __init__(
        self,
        kind: str,
        states: type[S],
        table: Mapping[tuple[S, S], Handler],
        *,
        state_field: str = "state",
        previous_field: str | None = "previousState",
        time_field: str = "stateTransitionTime",
        previous_time_field: str | None = "previousStateTransitionTime",
    ):
        self.kind = kind
        self.states = states
        self.table = dict(table)
        self.state_field = state_field
        self.previous_field = previous_field
        self.time_field = time_field
        self.previous_time_field = previous_time_field
        self._history: dict[str, deque[tuple[str, str, str]]] = {}

    def state_of(self, doc: Mapping[str, Any]) -> S:
        return self.states(doc[self.state_field])

    def allowed(self, doc: Mapping[str, Any], to: S) -> bool:
        return (self.state_of(doc), to) in self.table

    def apply(self, doc: dict[str, Any], to: S, ctx: Context) -> list[ins.Instruction]:
        """Move ``doc`` to state ``to``; returns the instructions the transition implies."""
        frm = self.state_of(doc)
        key = str(doc.get("id", "?"))
        handler = self.table.get((frm, to))
        if handler is None:
            raise InvalidTransition(self.kind, key, frm.value, to.value, list(self._history.get(key, ())))
        if self.previous_field:
            doc[self.previous_field] = frm.value
        if self.previous_time_field and self.time_field in doc:
            doc[self.previous_time_field] = doc[self.time_field]
        doc[self.state_field] = to.value
        doc[self.time_field] = ctx.now
        hist = self._history.get(key)
        if hist is None:
            if len(self._history) > 50_000:
                self._history.clear()
            hist = self._history[key] = deque(maxlen=_HISTORY_LEN)
        hist.append((frm.value, to.value, ctx.now))
        return handler(doc, ctx)

    def forget(self, entity_id: str) -> None:
        self._history.pop(entity_id, None)


def _table(pairs: list[tuple[S, S]], handlers: Mapping[tuple[S, S], Handler] | None = None) -> dict[tuple[S, S], Handler]:
    """The allowed transitions: ``pairs`` with no follow-up, plus every key of ``handlers``."""
    table: dict[tuple[S, S], Handler] = dict.fromkeys(pairs, _none)
    table.update(handlers or {})
    return table


# --- Pools ------------------------------------------------------------------------------------


def _pool_deleting(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.RemovePoolNodes(pool_id=doc["id"])]


POOL = StateMachine(
    "pool",
    PoolState,
    _table([(PoolState.ACTIVE, PoolState.DELETING)], {(PoolState.ACTIVE, PoolState.DELETING): _pool_deleting}),
    previous_field=None,
    previous_time_field=None,
)

_A = AllocationState
ALLOCATION = StateMachine(
    "pool allocation",
    AllocationState,
    _table([(_A.STEADY, _A.RESIZING), (_A.RESIZING, _A.STEADY), (_A.RESIZING, _A.STOPPING),
            (_A.STOPPING, _A.STEADY), (_A.RESIZING, _A.RESIZING)]),
    state_field="allocationState",
    previous_field=None,
    time_field="allocationStateTransitionTime",
    previous_time_field=None,
)

# --- Nodes ------------------------------------------------------------------------------------

_N = NodeState
_NODE_UP = [_N.IDLE, _N.RUNNING, _N.OFFLINE, _N.START_TASK_FAILED, _N.UNUSABLE, _N.WAITING_FOR_START_TASK, _N.STARTING]


def _node_restart(kind: str) -> Handler:
    def handler(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
        return [ins.RestartNode(pool_id=doc["poolId"], node_id=doc["id"], reimage=kind == "reimage",
                                option=ctx.reason or "requeue")]

    return handler


def _node_offline(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    # Disable scheduling with requeue / terminate stops what runs there; taskcompletion lets it finish.
    if ctx.reason in ("requeue", "terminate"):
        return [ins.StopNodeTasks(pool_id=doc["poolId"], node_id=doc["id"], option=ctx.reason)]
    return []


def _node_preempted(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.PreemptNode(pool_id=doc["poolId"], node_id=doc["id"])]


def _node_leaving(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.RemoveNode(pool_id=doc["poolId"], node_id=doc["id"], requeue=ctx.reason)]


NODE = StateMachine(
    "node",
    NodeState,
    _table(
        [
            (_N.CREATING, _N.STARTING),
            (_N.STARTING, _N.WAITING_FOR_START_TASK),
            (_N.STARTING, _N.IDLE),
            (_N.STARTING, _N.OFFLINE),
            (_N.WAITING_FOR_START_TASK, _N.IDLE),
            (_N.WAITING_FOR_START_TASK, _N.OFFLINE),
            (_N.WAITING_FOR_START_TASK, _N.START_TASK_FAILED),
            (_N.IDLE, _N.RUNNING),
            (_N.RUNNING, _N.IDLE),
            (_N.IDLE, _N.OFFLINE),
            (_N.RUNNING, _N.OFFLINE),
            (_N.OFFLINE, _N.IDLE),
            (_N.OFFLINE, _N.RUNNING),
            (_N.START_TASK_FAILED, _N.OFFLINE),
            (_N.START_TASK_FAILED, _N.IDLE),
            (_N.REBOOTING, _N.STARTING),
            (_N.REIMAGING, _N.STARTING),
            *[(s, _N.UNUSABLE) for s in [*_NODE_UP, _N.CREATING, _N.REBOOTING, _N.REIMAGING] if s != _N.UNUSABLE],
            (_N.PREEMPTED, _N.STARTING),  # a preempted Spot node restored
        ],
        {
            (_N.RUNNING, _N.OFFLINE): _node_offline,
            **{(s, _N.REBOOTING): _node_restart("reboot") for s in _NODE_UP},
            **{(s, _N.REIMAGING): _node_restart("reimage") for s in _NODE_UP},
            **{(s, _N.LEAVING_POOL): _node_leaving for s in [*_NODE_UP, _N.CREATING, _N.REBOOTING, _N.REIMAGING,
                                                               _N.PREEMPTED]},
            **{(s, _N.PREEMPTED): _node_preempted for s in [*_NODE_UP, _N.CREATING, _N.REBOOTING, _N.REIMAGING]},
        },
    ),
    previous_field=None,
    previous_time_field=None,
)

START_TASK = StateMachine(
    "start task",
    StartTaskState,
    _table([(StartTaskState.RUNNING, StartTaskState.COMPLETED), (StartTaskState.COMPLETED, StartTaskState.RUNNING),
            (StartTaskState.RUNNING, StartTaskState.RUNNING)]),
    previous_field=None,
    time_field="_startTaskTransitionTime",
    previous_time_field=None,
)

# --- Jobs -------------------------------------------------------------------------------------

_J = JobState


def _job_terminating(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.StopJobTasks(job_id=doc["id"], reason=ctx.reason or "UserTerminate"), ins.RunJobRelease(job_id=doc["id"])]


def _job_deleting(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.StopJobTasks(job_id=doc["id"], reason="JobDeleted"), ins.RunJobRelease(job_id=doc["id"]),
            ins.PurgeJob(job_id=doc["id"])]


def _job_disabling(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    return [ins.DisableJobTasks(job_id=doc["id"], option=str(ctx.details.get("disableTasks", "requeue")))]


JOB = StateMachine(
    "job",
    JobState,
    _table(
        [
            (_J.ACTIVE, _J.DISABLING),
            (_J.DISABLING, _J.DISABLED),
            (_J.DISABLED, _J.ENABLING),
            (_J.ENABLING, _J.ACTIVE),
            (_J.TERMINATING, _J.COMPLETED),
            (_J.ACTIVE, _J.COMPLETED),  # its auto pool could not be created (executionInfo.schedulingError)
        ],
        {
            (_J.ACTIVE, _J.DISABLING): _job_disabling,
            **{(s, _J.TERMINATING): _job_terminating for s in (_J.ACTIVE, _J.DISABLING, _J.DISABLED, _J.ENABLING)},
            **{(s, _J.DELETING): _job_deleting for s in _J if s != _J.DELETING},
        },
    ),
)

# --- Tasks ------------------------------------------------------------------------------------

_T = TaskState


def _task_stop(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    node = (doc.get("nodeInfo") or {}).get("nodeId")
    return [ins.KillTask(job_id=ctx.details.get("jobId", ""), task_id=doc["id"], node_id=node or "")] if node else []


TASK = StateMachine(
    "task",
    TaskState,
    _table(
        [
            (_T.ACTIVE, _T.PREPARING),
            (_T.ACTIVE, _T.RUNNING),
            (_T.ACTIVE, _T.COMPLETED),
            (_T.PREPARING, _T.RUNNING),
            (_T.PREPARING, _T.ACTIVE),
            (_T.PREPARING, _T.COMPLETED),
            (_T.RUNNING, _T.ACTIVE),
            (_T.RUNNING, _T.COMPLETED),
            (_T.COMPLETED, _T.ACTIVE),
        ],
        {
            # Killing is implied only when a running task is stopped from outside (terminate, requeue).
            (_T.RUNNING, _T.COMPLETED): lambda d, c: _task_stop(d, c) if c.reason == "terminate" else [],
            (_T.RUNNING, _T.ACTIVE): lambda d, c: _task_stop(d, c) if c.reason == "requeue" else [],
            (_T.PREPARING, _T.COMPLETED): lambda d, c: _task_stop(d, c) if c.reason == "terminate" else [],
            (_T.PREPARING, _T.ACTIVE): lambda d, c: _task_stop(d, c) if c.reason == "requeue" else [],
        },
    ),
)

# --- Job schedules ----------------------------------------------------------------------------

_S = JobScheduleState


def _schedule_ending(delete: bool) -> Handler:
    def handler(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
        return [ins.EndScheduleJobs(schedule_id=doc["id"], delete=delete)]

    return handler


JOB_SCHEDULE = StateMachine(
    "job schedule",
    JobScheduleState,
    _table(
        [
            (_S.ACTIVE, _S.DISABLED),
            (_S.DISABLED, _S.ACTIVE),
            (_S.ACTIVE, _S.COMPLETED),  # no further run, and its last job has ended
            (_S.TERMINATING, _S.COMPLETED),  # the jobs it terminated have completed
        ],
        {
            **{(s, _S.TERMINATING): _schedule_ending(False) for s in (_S.ACTIVE, _S.DISABLED)},
            **{(s, _S.DELETING): _schedule_ending(True) for s in _S if s != _S.DELETING},
        },
    ),
)


# --- Certificates -----------------------------------------------------------------------------

_C = CertificateState


def _certificate_deleting(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    doc.pop("deleteCertificateError", None)
    return [ins.FinishCertificateDeletion(thumbprint_algorithm=doc["thumbprintAlgorithm"],
                                          thumbprint=doc["thumbprint"])]


def _certificate_kept(doc: dict[str, Any], ctx: Context) -> list[ins.Instruction]:
    doc.pop("deleteCertificateError", None)
    return []


# deleting -> gone is no transition: the engine removes the certificate once nothing uses it.
CERTIFICATE = StateMachine(
    "certificate",
    CertificateState,
    _table(
        [(_C.DELETING, _C.DELETE_FAILED)],  # still used by a pool or a node (deleteCertificateError set)
        {
            (_C.ACTIVE, _C.DELETING): _certificate_deleting,
            (_C.DELETE_FAILED, _C.DELETING): _certificate_deleting,  # a retry
            (_C.DELETE_FAILED, _C.ACTIVE): _certificate_kept,  # cancel deletion
        },
    ),
)
