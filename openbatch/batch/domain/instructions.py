"""What a transition asks the engine to do after the state has changed (data, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    """Base class of everything a transition can ask for."""


@dataclass(frozen=True)
class KillTask(Instruction):
    job_id: str
    task_id: str
    node_id: str


@dataclass(frozen=True)
class StopJobTasks(Instruction):
    """Kill every running task of the job (its active tasks stay active, as Azure documents)."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class DisableJobTasks(Instruction):
    """requeue | terminate | wait — what happens to the job's running tasks."""

    job_id: str
    option: str


@dataclass(frozen=True)
class RunJobRelease(Instruction):
    job_id: str


@dataclass(frozen=True)
class PurgeJob(Instruction):
    job_id: str


@dataclass(frozen=True)
class RemovePoolNodes(Instruction):
    pool_id: str


@dataclass(frozen=True)
class RemoveNode(Instruction):
    pool_id: str
    node_id: str
    requeue: str  # nodeDeallocationOption: requeue | terminate | taskcompletion | retaineddata


@dataclass(frozen=True)
class RestartNode(Instruction):
    pool_id: str
    node_id: str
    reimage: bool
    option: str = "requeue"  # nodeRebootOption / nodeReimageOption: requeue | terminate | taskcompletion | retaineddata


@dataclass(frozen=True)
class PreemptNode(Instruction):
    """A Spot/low-priority node was preempted: its runs stop (tasks requeued), it stays preempted
    until it is restored (it boots again) or the pool lets it go."""

    pool_id: str
    node_id: str


@dataclass(frozen=True)
class StopNodeTasks(Instruction):
    """Scheduling was disabled on a running node: requeue or terminate the tasks running there."""

    pool_id: str
    node_id: str
    option: str  # nodeDisableSchedulingOption: requeue | terminate


@dataclass(frozen=True)
class EndScheduleJobs(Instruction):
    """A job schedule is terminating (its unfinished jobs are terminated) or being deleted (every job
    of it is deleted); the engine completes or removes the schedule once they are done."""

    schedule_id: str
    delete: bool


@dataclass(frozen=True)
class FinishCertificateDeletion(Instruction):
    """A certificate is being deleted: once the deletion has run its course the engine removes it,
    or moves it to deletefailed when a pool or a node still uses it."""

    thumbprint_algorithm: str
    thumbprint: str
