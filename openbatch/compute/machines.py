"""What makes the nodes of a ``NodeHost`` behave like machines: their namespaces and accounts.

With isolation on (``--node-isolation``, node/isolation.py) each node runs in namespaces of its
own, started when the node boots and killed when it reboots (a reboot kills every process of the
node), reimaged (its upper layer is deleted too) or removed (its side directory goes). The
pool's ``userAccounts`` become accounts on each node (node/accounts.py): inside the node when it
is isolated, else prefixed host accounts that go with the pool's last node on this host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pwd
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openbatch.compute.base import Doc
from openbatch.node import accounts, identity, isolation
from openbatch.node.identity import UserSpec
from openbatch.node.isolation import NodeNamespace
from openbatch.node.run import close_spawners

log = logging.getLogger("openbatch.compute")

ISOLATION_MODES = ("auto", "on", "off")


class Machines:
    """Namespaces and accounts of the nodes under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, isolation_mode: str = "off"):
        if isolation_mode not in ISOLATION_MODES:
            raise ValueError(f"node isolation must be one of {', '.join(ISOLATION_MODES)}, not {isolation_mode!r}")
        self.root = root
        self.mode = isolation_mode
        self.isolated = False
        self.reason: str | None = "off"
        self._ns: dict[str, NodeNamespace] = {}
        self._accounts: dict[str, dict[str, UserSpec]] = {}  # node id -> account name (lower case) -> account
        self._pools: dict[str, str] = {}  # node id -> pool id
        self._host_accounts: dict[str, set[str]] = {}  # pool id (lower case) -> host accounts made for it
        self._host_lock = asyncio.Lock()

    def start(self) -> None:
        """Decide whether nodes are isolated (``auto``: when this host can); OSError for ``on`` when it cannot."""
        if self.mode == "off":
            return
        self.reason = isolation.unavailable_reason(self.root)
        if self.reason is None:
            self.isolated = True
            log.info("nodes are isolated: own mount, UTS and PID namespaces over an overlay of /")
        elif self.mode == "on":
            raise OSError(f"--node-isolation on: {self.reason}")
        else:
            log.info("nodes are not isolated: %s", self.reason)

    def stop(self) -> None:
        for node_id in list(self._ns):
            self.halt(node_id)

    def namespace(self, node_id: str) -> NodeNamespace | None:
        return self._ns.get(node_id)

    async def boot(self, pool_id: str, node_id: str, node_root: Path, users: Sequence[Any] | None,
                   isolate: bool = True) -> None:
        """The node's namespaces (started when not running; none when not ``isolate``) and its pool's accounts."""
        self._pools[node_id] = pool_id
        ns = self._ns.get(node_id)
        if self.isolated and isolate and (ns is None or not ns.alive()):
            if ns is not None:
                self.halt(node_id)
            hide = self.root.parent if self.root.parent != Path(self.root.anchor) else self.root
            self._ns[node_id] = ns = await asyncio.to_thread(isolation.start_namespace, self.root, node_id,
                                                             node_root, hide)
        if users is not None and identity.is_root():
            # One at a time: nodes sharing the host make the same host accounts (and useradd locks
            # /etc/passwd); an isolated node's are its own, made in parallel with other nodes'.
            if ns is None:
                async with self._host_lock:
                    made = await asyncio.to_thread(self._make_accounts, pool_id, ns, accounts.accounts_of(users))
            else:
                made = await asyncio.to_thread(self._make_accounts, pool_id, ns, accounts.accounts_of(users))
            self._accounts[node_id] = made

    def _make_accounts(self, pool_id: str, ns: NodeNamespace | None,
                       wanted: list[accounts.PoolAccount]) -> dict[str, UserSpec]:
        made: dict[str, UserSpec] = {}
        for account in wanted:
            if ns is not None:
                made[account.name.lower()] = accounts.ensure(account, account.name, ns.enter_argv)
            else:
                name = accounts.host_name(pool_id, account.name)
                made[account.name.lower()] = accounts.ensure(account, name)
                self._host_accounts.setdefault(pool_id.lower(), set()).add(name)
        return made

    def user_for(self, node_id: str, user_identity: str) -> UserSpec | None:
        """The pool account a run's identity names (None: an auto-user, or no such account)."""
        if user_identity.lower() in accounts.AUTO_IDENTITIES:
            return None
        return self._accounts.get(node_id, {}).get(user_identity.lower())

    def halt(self, node_id: str) -> None:
        """Kill every process of the node's namespaces and the spawner helpers inside them."""
        ns = self._ns.pop(node_id, None)
        if ns is not None:
            close_spawners(ns.key)
            ns.kill()

    async def reimage(self, node_id: str) -> None:
        self.halt(node_id)
        self._accounts.pop(node_id, None)
        await asyncio.to_thread(isolation.wipe, isolation.side_dir(self.root, node_id))

    async def remove(self, node_id: str) -> None:
        await self.reimage(node_id)
        pool_id = self._pools.pop(node_id, None)
        if pool_id is None or any(p.lower() == pool_id.lower() for p in self._pools.values()):
            return
        made = self._host_accounts.pop(pool_id.lower(), set())
        if made or identity.is_root():
            for name in sorted(made | set(accounts.host_accounts_of(pool_id))):
                with contextlib.suppress(KeyError):  # its tasks' helper: userdel refuses an account in use
                    close_spawners(uid=pwd.getpwnam(name).pw_uid)
                await asyncio.to_thread(accounts.remove, name)

    # --- node users and remote login ---------------------------------------------------------------

    async def node_user(self, pool_id: str, node_id: str, mode: str, name: str, user: Doc) -> None:
        """Add / update / delete (``mode``) a node user: inside an isolated node under its own name,
        otherwise on the host under the pool's prefix (deleted with the pool's last node). OSError
        when the server cannot make accounts; see accounts.node_user for the rest."""
        if not identity.is_root():
            raise OSError("node user accounts need the server to run as root")
        ns = self._ns.get(node_id)
        system_name = name if ns is not None else accounts.host_name(pool_id, name)
        async with self._host_lock:
            await asyncio.to_thread(
                accounts.node_user, mode, system_name, admin=bool(user.get("isAdmin")),
                expiry=str(user.get("expiry", "")),
                password=str(user.get("password") or ""), ssh_public_key=str(user.get("sshPublicKey") or ""),
                enter=ns.enter_argv if ns is not None else None)
        if ns is None and mode == "add":
            self._host_accounts.setdefault(pool_id.lower(), set()).add(system_name)

    async def remote_login(self, node_id: str) -> tuple[str, int]:
        """(address, port) of an SSH server for the node: one ``sshd`` started inside the node's
        namespaces on a port of its own, the first time it is asked for (a reboot stops it)."""
        ns = self._ns.get(node_id)
        if ns is None:
            raise OSError("remote login needs an isolated node (the server running as root, --node-isolation)")
        if ns.ssh_port:
            return "127.0.0.1", ns.ssh_port
        sshd = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/sbin/sshd") if Path(p).exists()), None)
        if sshd is None:
            raise OSError("remote login needs an SSH server on the host: install openssh-server")
        port = await asyncio.to_thread(_start_sshd, ns, sshd)
        ns.ssh_port = port
        return "127.0.0.1", port


def _start_sshd(ns: NodeNamespace, sshd: str) -> int:
    with socket.socket() as probe:  # a free port (sshd binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    script = (f"mkdir -p /run/sshd && chmod 755 /run/sshd && (ssh-keygen -A >/dev/null 2>&1 || true) && "
              f"exec {sshd} -p {port} -o ListenAddress=127.0.0.1 -o PidFile=/run/openbatch-sshd.pid")
    done = subprocess.run(ns.enter_argv(["/bin/sh", "-c", script]), capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        raise OSError(f"the node's SSH server did not start: {done.stderr.decode(errors='replace').strip()[-300:]}")
    return port
