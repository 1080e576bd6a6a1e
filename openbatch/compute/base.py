"""The ComputeProvider protocol: what the engine asks of wherever nodes live.

Providers only do what they are told and report back; all state lives in the store and is
changed by the engine. ``local`` runs nodes as directories + processes on this machine; ``dask``
runs them as Dask workers (compute/dask.py); both run compute/nodehost.py where the node is.

The engine drives a node with: ``create_node`` (as it joins the pool), ``restart_node`` (reboot /
reimage: every process of the node is killed, reimage also wipes its directory), ``remove_node``;
and runs work on it with ``run(RunSpec) -> RunOutcome`` (resource files, the command, output
files: everything that happens where the node is) and ``kill(node_id, key)``. ``run`` never
raises for a failure of the work itself (that is a ``RunOutcome`` with ``failure``); it raises
``NodeGone`` when the node itself is no longer usable (its directory vanished, its worker left).
A provider whose nodes can be lost behind the engine's back (a worker dying) says so through the
``NodeEvents`` the engine attaches; the Files API methods are async (they may cross the network).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from openbatch.node.certs import NodeCertificate

Doc = dict[str, Any]


@dataclass(frozen=True)
class NodeFile:
    """An entry under a node's root (or under a task's directory)."""

    path: str  # relative, '/'-separated
    is_directory: bool
    size: int
    mtime: float
    ctime: float
    mode: int


class FileAccessError(Exception):
    """``code``: FileNotFound, or PathOutsideNode for a path that leaves the node's directory."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class OpenedFile(Protocol):
    """A node file opened once: what ``info`` says and what ``read`` returns are of the same file."""

    info: NodeFile

    def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (inclusive, None = to the end), streamed; closes the file after."""
        ...

    def close(self) -> None: ...


class NodeGone(Exception):
    """The node cannot run anything any more (e.g. its directory was removed behind our back)."""


# What a RunSpec runs: an ordinary task, a pool's start task, a job preparation / release task.
TASK, START_TASK, JOB_PREPARATION, JOB_RELEASE = "task", "starttask", "jobpreparation", "jobrelease"


@dataclass
class RunSpec:
    """One piece of work for one node; ``key`` identifies it on that node (for ``kill``)."""

    kind: str
    key: str
    account: str
    pool_id: str
    node_id: str
    command_line: str
    job_id: str = ""
    task_id: str = ""
    resource_files: list[Doc] = field(default_factory=list)
    output_files: list[Doc] = field(default_factory=list)
    environment: list[Doc] = field(default_factory=list)  # [{"name", "value"}]: job common, then the task's own
    elevation: str = "nonadmin"  # userIdentity.autoUser.elevationLevel
    user_identity: str = "PoolNonAdmin"  # AZ_BATCH_TASK_USER_IDENTITY
    job_prep_id: str = ""  # the id of the job's preparation task, when it has one (AZ_BATCH_JOB_PREP_DIR)
    max_wall_clock: float | None = None  # seconds
    is_dedicated: bool = True
    refusal: Doc | None = None  # a failureInfo: the run fails before anything of it starts (never retried)
    # A multi-instance task: every node's entry of AZ_BATCH_HOST_LIST (primary first), this run's
    # index in it, and commonResourceFiles (downloaded into the task directory, not wd/).
    instance_hosts: list[str] = field(default_factory=list)
    instance_index: int = 0
    common_resource_files: list[Doc] = field(default_factory=list)
    # application packages (the pool's, then the task's): applicationId, version, askedVersion (None:
    # the default), directory (under the node's applications/), url (with a read SAS); node/apppkg.py
    app_packages: list[Doc] = field(default_factory=list)


@dataclass
class RunOutcome:
    """What happened; ``failure`` is a failureInfo dict (category, code, message, details)."""

    exit_code: int | None
    start_time: float  # epoch seconds
    end_time: float
    failure: Doc | None = None
    timed_out: bool = False
    killed: bool = False
    preprocessing: bool = False  # failed before the command ran (resource files, launch): never retried
    upload_failed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.failure is None and self.exit_code == 0


@dataclass(frozen=True)
class NodeInfo:
    ip_address: str
    root: str  # where the node's directory is (informational)


class NodeEvents(Protocol):
    """What a provider tells the engine on its own (the engine implements it)."""

    def node_lost(self, node_id: str, reason: str) -> None:
        """The node's machine/worker is gone: the node becomes unusable, its running tasks are requeued."""
        ...

    def node_back(self, node_id: str) -> None:
        """A lost node's machine/worker is back: the node reboots (its start task runs again)."""
        ...


class ComputeProvider(Protocol):
    """Where nodes are. The engine calls these; none of them change the store."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def attach(self, events: NodeEvents) -> None:
        """Where to report nodes lost and back (called once by the engine before anything else)."""
        ...

    # Nodes.
    async def create_node(self, account: str, pool_id: str, node_id: str,
                          certificates: Sequence[NodeCertificate] | None = None, slots: int = 1,
                          cluster: str = "", users: Sequence[Doc] | None = None,
                          inter_node: bool = False) -> NodeInfo:
        """Make the node exist (idempotent: an existing node directory is kept, as after a restart) and,
        when ``certificates`` is given, install them in place of what the node had (node/certs.py).
        ``slots``: the pool's taskSlotsPerNode (a provider whose machines declare slots only picks one
        that has that many). ``cluster``: the cluster the pool names (its metadata ``openbatch.cluster``,
        "" none); OSError for one this provider does not have. ``users``: the pool's userAccounts, made
        accounts of the node where the provider can (node/accounts.py); a run whose ``user_identity``
        names one runs as it. ``inter_node``: the pool's enableInterNodeCommunication."""
        ...

    async def restart_node(self, pool_id: str, node_id: str, reimage: bool) -> None:
        """Kill every process of the node; ``reimage`` also wipes its directory."""
        ...

    async def remove_node(self, pool_id: str, node_id: str) -> None:
        """Kill every process of the node and delete it."""
        ...

    def node_ok(self, node_id: str) -> bool:
        """Whether the node can still run work (its directory exists)."""
        ...

    async def node_user(self, pool_id: str, node_id: str, mode: str, name: str, user: Doc) -> None:
        """``mode`` add / update / delete a user account on the node (``user``: isAdmin, password,
        sshPublicKey, expiry as YYYY-MM-DD). FileExistsError (add: exists), KeyError (no such user),
        OSError (the provider cannot)."""
        ...

    async def remote_login(self, pool_id: str, node_id: str) -> tuple[str, int]:
        """(address, port) of an SSH server for the node; OSError when there is none."""
        ...

    # Work.
    async def run(self, spec: RunSpec) -> RunOutcome: ...

    def kill(self, node_id: str, key: str) -> bool:
        """Kill the work ``key`` on the node (its whole process group); its ``run`` returns ``killed``."""
        ...

    def remove_task_dir(self, node_id: str, job_id: str, task_id: str) -> None:
        """Delete a task's directory (retentionTime expired, task deleted)."""
        ...

    async def remove_job_dir(self, node_id: str, job_id: str) -> None:
        """Delete a job's directory on a node (the job was deleted)."""
        ...

    # Files API (the Batch service reads node directories through these).
    async def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        """Entries under ``base`` (a path relative to the node root), FileAccessError if it does not exist."""
        ...

    async def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile: ...

    async def open_file(self, pool_id: str, node_id: str, path: str) -> OpenedFile:
        """A file or directory opened for its properties and bytes; FileAccessError if it cannot be."""
        ...

    async def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None: ...

    def task_dir(self, job_id: str, task_id: str) -> str:
        """A task's directory relative to the node root (workitems/{job}/job-1/{task}; for a job of a
        job schedule workitems/{schedule}/job-N/{task})."""
        ...
