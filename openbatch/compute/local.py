"""Local compute provider: nodes are directories + processes on this machine (the embedded default).

Everything that happens where a node is — its directory, runs, kills, the Files API — is
compute/nodehost.py's ``NodeHost``, the same code the ``dask`` provider runs inside each worker;
here one ``NodeHost`` under ``{data dir}/nodes`` runs in the server's own process. This module
adds what needs the server's settings: the account keys behind auto-storage container URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from openbatch.common.sas import generate_container_sas
from openbatch.compute.base import Doc, NodeEvents, NodeFile, NodeInfo, RunOutcome, RunSpec
from openbatch.compute.nodefiles import OpenNodeFile
from openbatch.compute.nodehost import NodeHost, kill_processes_under, relative_task_dir
from openbatch.config import Settings
from openbatch.node.certs import NodeCertificate

__all__ = ["LocalProvider", "kill_processes_under", "auto_storage_url"]

SAS_LIFETIME = timedelta(days=7)


def auto_storage_url(settings: Settings, account: str, container: str) -> str:
    """The URL of an account's container with a read/list SAS (autoStorageContainerName)."""
    acct = settings.accounts.get(account)
    base = f"{settings.blob_url.rstrip('/')}/{account}/{container}"
    if acct is None:
        return base
    sas = generate_container_sas(acct, container, "rl", datetime.now(UTC) + SAS_LIFETIME)
    return f"{base}?{sas}"


class LocalProvider:
    """See the module docstring."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.data_dir / "nodes"
        self.host = NodeHost(self.root, batch_url=settings.batch_url, isolation=settings.node_isolation,
                             auto_storage=lambda account, name: auto_storage_url(settings, account, name))

    async def start(self) -> None:
        await self.host.start()

    async def stop(self) -> None:
        await self.host.stop()

    def attach(self, events: NodeEvents) -> None:
        """Nothing to report: a node here is lost only with its directory (``node_ok``)."""

    # --- nodes ---------------------------------------------------------------------------------

    async def create_node(self, account: str, pool_id: str, node_id: str,
                          certificates: Sequence[NodeCertificate] | None = None, slots: int = 1,
                          cluster: str = "", users: Sequence[Doc] | None = None, inter_node: bool = False) -> NodeInfo:
        if cluster:
            raise OSError(f"the pool names the cluster {cluster!r} (metadata openbatch.cluster), but this server "
                          "runs nodes on its own machine (--compute local)")
        root = await self.host.create_node(pool_id, node_id, certificates, users, inter_node)
        return NodeInfo(ip_address="127.0.0.1", root=str(root))

    async def restart_node(self, pool_id: str, node_id: str, reimage: bool) -> None:
        await self.host.restart_node(pool_id, node_id, reimage)

    async def remove_node(self, pool_id: str, node_id: str) -> None:
        await self.host.remove_node(pool_id, node_id)

    def node_ok(self, node_id: str) -> bool:
        return self.host.node_ok(node_id)

    async def node_user(self, pool_id: str, node_id: str, mode: str, name: str, user: Doc) -> None:
        await self.host.machines.node_user(pool_id, node_id, mode, name, user)

    async def remote_login(self, pool_id: str, node_id: str) -> tuple[str, int]:
        return await self.host.machines.remote_login(node_id)

    # --- work ----------------------------------------------------------------------------------

    async def run(self, spec: RunSpec) -> RunOutcome:
        return await self.host.run(spec)

    def kill(self, node_id: str, key: str) -> bool:
        return self.host.kill(node_id, key)

    def task_dir(self, job_id: str, task_id: str) -> str:
        return relative_task_dir(job_id, task_id)

    def remove_task_dir(self, node_id: str, job_id: str, task_id: str) -> None:
        self.host.remove_task_dir(node_id, job_id, task_id)

    async def remove_job_dir(self, node_id: str, job_id: str) -> None:
        await self.host.remove_job_dir(node_id, job_id)

    # --- Files API -----------------------------------------------------------------------------

    async def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        return self.host.files(pool_id, node_id).listing(base, recursive)

    async def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile:
        return self.host.files(pool_id, node_id).stat(path)

    async def open_file(self, pool_id: str, node_id: str, path: str) -> OpenNodeFile:
        return self.host.files(pool_id, node_id).open(path)

    async def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None:
        self.host.files(pool_id, node_id).delete(path, recursive)
