"""Azure Batch's directory layout of a compute node, and safe resolution of user paths in it.

A node's root (``AZ_BATCH_NODE_ROOT_DIR``) holds::

    applications/                 application packages
    certs/starttask/, certs/task/ the pool's certificates by visibility (AZ_BATCH_CERTIFICATES_DIR)
    fsmounts/                     mounted file systems (AZ_BATCH_NODE_MOUNTS_DIR)
    shared/                       read/write for every task on the node
    startup/                      the start task: stdout.txt, stderr.txt, wd/
    workitems/{job}/job-1/{task}/ a task: stdout.txt, stderr.txt, wd/
    workitems/{schedule}/{job}/{task}/   (jobs created by a job schedule)

Ids given by users are single path components here: anything else is refused with
:class:`PathOutsideNode`, so a crafted id can never name a directory outside the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STDOUT = "stdout.txt"
STDERR = "stderr.txt"
WORKING_DIR = "wd"
CERTS = "certs"
JOB_PREP_TASK_ID = "jobpreparation"
JOB_RELEASE_TASK_ID = "jobrelease"

# Percent-encoded separators and dots: a path still holding them was decoded a different number of
# times than the caller thinks; refusing them is safer than guessing which reading was meant.
_ENCODED_TRICKS = ("%2f", "%5c", "%2e", "%00")


class PathOutsideNode(ValueError):
    """A user-supplied path or id would leave the node's directory (or is not a valid name)."""

    code = "PathOutsideNode"

    def __init__(self, path: str, reason: str):
        super().__init__(f"{reason}: {path!r}")
        self.path = path
        self.reason = reason


def _component(name: str, what: str) -> str:
    """``name`` if it is usable as one directory entry, else PathOutsideNode."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise PathOutsideNode(name, f"invalid {what}")
    return name


def relative_parts(relative: str) -> list[str]:
    """The components of a user path relative to a node or task directory, refusing anything that
    could leave it: NUL, ``..`` segments, absolute paths, percent-encoded separators or dots.
    Backslashes are separators (clients on Windows send them). ``""`` and ``"."`` name the
    directory itself (``[]``). Links are the opener's business (:mod:`openbatch.node.safefs`)."""
    if "\x00" in relative:
        raise PathOutsideNode(relative, "NUL in path")
    lowered = relative.lower()
    if any(trick in lowered for trick in _ENCODED_TRICKS):
        raise PathOutsideNode(relative, "encoded separator in path")
    normal = relative.replace("\\", "/")
    if normal.startswith("/"):
        raise PathOutsideNode(relative, "absolute path")
    parts = [p for p in normal.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathOutsideNode(relative, "path leaves its directory")
    return parts


@dataclass(frozen=True)
class NodeLayout:
    """The directory tree of one node, rooted at ``root``."""

    root: Path

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def startup(self) -> Path:
        return self.root / "startup"

    @property
    def applications(self) -> Path:
        return self.root / "applications"

    @property
    def workitems(self) -> Path:
        return self.root / "workitems"

    @property
    def mounts(self) -> Path:
        return self.root / "fsmounts"

    def certificates(self, start_task: bool) -> Path:
        """Where the certificates a run may see are: the start task's, or every other task's."""
        return self.root / CERTS / ("starttask" if start_task else "task")

    def create(self) -> None:
        """Make the tree (idempotent). ``startup/wd`` is the start task's to make: ``startup/`` may
        belong to a non-admin start task, so nothing is made inside it by path."""
        for path in (self.shared, self.startup, self.applications, self.workitems, self.mounts):
            path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        """False when the node's directory was removed behind the server's back."""
        return self.workitems.is_dir() and self.shared.is_dir()

    def job_dir(self, job_id: str, schedule_id: str | None = None) -> Path:
        """``workitems/{job}/job-1``, or ``workitems/{schedule}/{job}`` for a job of a job schedule
        (whose id ``{schedule}:job-N`` says so: no other job id has a ``:``)."""
        if schedule_id is None and ":" in job_id:
            schedule_id, _, job_id = job_id.partition(":")
        job = _component(job_id, "job id")
        if schedule_id is None:
            return self.workitems / job / "job-1"
        return self.workitems / _component(schedule_id, "job schedule id") / job

    def job_home(self, job_id: str) -> Path:
        """The directory that holds a job and nothing else (``workitems/{job}``; for a job of a job
        schedule ``workitems/{schedule}/job-N``): what goes when the job is deleted."""
        job = self.job_dir(job_id)
        return job if ":" in job_id else job.parent

    def task_dir(self, job_id: str, task_id: str, schedule_id: str | None = None) -> Path:
        """A task's directory: holds ``stdout.txt``, ``stderr.txt`` and ``wd/``."""
        return self.job_dir(job_id, schedule_id) / _component(task_id, "task id")

    def job_prep_dir(self, job_id: str, task_id: str = JOB_PREP_TASK_ID, schedule_id: str | None = None) -> Path:
        return self.task_dir(job_id, task_id, schedule_id)

    def job_release_dir(
        self, job_id: str, task_id: str = JOB_RELEASE_TASK_ID, schedule_id: str | None = None
    ) -> Path:
        return self.task_dir(job_id, task_id, schedule_id)

    def startup_task_dir(self) -> Path:
        return self.startup



def working_dir(task_dir: Path) -> Path:
    return task_dir / WORKING_DIR
