"""A pool's ``userAccounts`` as real accounts on its nodes.

Each account of the pool (name, password, ``sshPrivateKey``, ``elevationLevel``,
``linuxUserConfiguration`` uid/gid) is made with ``useradd`` when the node boots, when the server
runs as root: inside the node's own file system for an isolated node (node/isolation.py), so every
node has the account under its own name, as on Azure; otherwise on the host, under a name prefixed
per pool (``p{6 hex of the pool id}-{name}``, at most 32 characters), removed when the pool's last
node on this host goes. Admin accounts join the ``sudo`` group when there is one. The password
goes to ``chpasswd`` and the SSH key to ``~/.ssh/id_rsa`` (with its public half in
``authorized_keys``), both through the standard input, never a command line or a log.

Tasks whose ``userIdentity.userName`` names an account run as it (its uid and gid).
"""

from __future__ import annotations

import hashlib
import logging
import pwd
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from openbatch.node.identity import UserSpec

log = logging.getLogger(__name__)

# The identities of auto-users (AZ_BATCH_TASK_USER_IDENTITY); anything else names a pool account.
AUTO_IDENTITIES = frozenset({"pooladmin", "poolnonadmin", "taskadmin", "tasknonadmin"})
_TIMEOUT = 60.0

_SCRIPT = r"""
set -e
name=$1 uid=$2 gid=$3 admin=$4
if ! getent passwd "$name" >/dev/null; then
    if [ -n "$gid" ] && ! getent group "$gid" >/dev/null; then groupadd -g "$gid" "$name"; fi
    if [ -n "$gid" ]; then group="-g $gid"; else group=-U; fi
    useradd -m -s /bin/bash ${uid:+-u "$uid"} $group "$name"
fi
if [ "$admin" = 1 ] && getent group sudo >/dev/null; then usermod -aG sudo "$name"; fi
IFS= read -r password || true
if [ -n "$password" ]; then printf '%s:%s\n' "$name" "$password" | chpasswd; fi
key=$(cat)
if [ -n "$key" ]; then
    home=$(getent passwd "$name" | cut -d: -f6)
    mkdir -p "$home/.ssh"
    printf '%s\n' "$key" > "$home/.ssh/id_rsa"
    chmod 700 "$home/.ssh"; chmod 600 "$home/.ssh/id_rsa"
    if command -v ssh-keygen >/dev/null && ssh-keygen -y -f "$home/.ssh/id_rsa" > "$home/.ssh/id_rsa.pub" 2>/dev/null; then
        grep -qxF "$(cat "$home/.ssh/id_rsa.pub")" "$home/.ssh/authorized_keys" 2>/dev/null ||
            cat "$home/.ssh/id_rsa.pub" >> "$home/.ssh/authorized_keys"
    fi
    chown -R "$name": "$home/.ssh"
fi
getent passwd "$name" | cut -d: -f3,4
"""


class AccountError(OSError):
    """An account could not be made."""


@dataclass(frozen=True)
class PoolAccount:
    name: str
    password: str = ""
    ssh_private_key: str = ""
    admin: bool = False
    uid: int | None = None
    gid: int | None = None


def accounts_of(docs: Sequence[Any] | None) -> list[PoolAccount]:
    """The pool's ``userAccounts`` (wire dicts) as PoolAccounts; malformed entries are skipped."""
    out = []
    for doc in docs or []:
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
            continue
        linux = doc.get("linuxUserConfiguration") or {}
        out.append(PoolAccount(
            name=doc["name"], password=str(doc.get("password") or ""),
            ssh_private_key=str(linux.get("sshPrivateKey") or ""),
            admin=str(doc.get("elevationLevel") or "nonadmin").lower() == "admin",
            uid=_int(linux.get("uid")), gid=_int(linux.get("gid"))))
    return out


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def host_prefix(pool_id: str) -> str:
    return f"p{hashlib.sha1(pool_id.lower().encode()).hexdigest()[:6]}-"


def host_name(pool_id: str, name: str) -> str:
    """The host account of a pool account (or node user) on a node that is not isolated."""
    return (host_prefix(pool_id) + name)[:32]


def host_accounts_of(pool_id: str) -> list[str]:
    """The host accounts made for a pool (by their prefix; also those a previous server made)."""
    prefix = host_prefix(pool_id)
    return sorted(entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith(prefix))


def ensure(account: PoolAccount, system_name: str, enter: Callable[[list[str]], list[str]] | None = None) -> UserSpec:
    """Make (or update) the account ``system_name`` for ``account``; its UserSpec. Blocking.

    ``enter`` turns a command line into one that runs inside the node (an isolated node)."""
    argv = ["/bin/sh", "-c", _SCRIPT, "openbatch-account", system_name,
            "" if account.uid is None else str(account.uid), "" if account.gid is None else str(account.gid),
            "1" if account.admin else "0"]
    if enter is not None:
        argv = enter(argv)
    secrets = (account.password.replace("\n", "") + "\n" + account.ssh_private_key).encode()
    try:
        done = subprocess.run(argv, input=secrets, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AccountError(0, f"the user account {account.name} could not be created: {exc}") from None
    ids = done.stdout.decode(errors="replace").strip().rsplit("\n", 1)[-1].split(":")
    if done.returncode != 0 or len(ids) != 2 or not all(i.isdigit() for i in ids):
        reason = done.stderr.decode(errors="replace").strip()[-500:]
        raise AccountError(0, f"the user account {account.name} could not be created: {reason}")
    return UserSpec(name=system_name, uid=int(ids[0]), gid=int(ids[1]), is_admin=account.admin)


def remove(system_name: str, enter: Callable[[list[str]], list[str]] | None = None) -> None:
    """Delete an account and its home directory (errors are logged, not raised). Blocking."""
    argv = ["userdel", "-r", system_name]
    if enter is not None:
        argv = enter(argv)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot delete the user account %s: %s", system_name, exc)
        return
    if done.returncode not in (0, 6):  # 6: no such user
        log.warning("cannot delete the user account %s: %s", system_name, done.stderr.decode(errors="replace").strip())


# Node users (POST/PUT/DELETE /pools/{p}/nodes/{n}/users): exit codes of the script below.
USER_EXISTS, USER_NOT_FOUND = 17, 18

_NODE_USER_SCRIPT = r"""
name=$1 mode=$2 admin=$3 expiry=$4
if getent passwd "$name" >/dev/null; then exists=1; else exists=0; fi
case $mode in
add) if [ $exists = 1 ]; then exit 17; fi
     useradd -m -s /bin/bash -U ${expiry:+-e "$expiry"} "$name" || exit 1;;
update) if [ $exists = 0 ]; then exit 18; fi
     usermod ${expiry:+-e "$expiry"} "$name" || exit 1;;
delete) if [ $exists = 0 ]; then exit 18; fi
     userdel -r "$name" 2>/dev/null || userdel "$name" || exit 1
     exit 0;;
esac
if [ "$admin" = 1 ] && getent group sudo >/dev/null; then usermod -aG sudo "$name"; fi
IFS= read -r password || true
if [ -n "$password" ]; then printf '%s:%s\n' "$name" "$password" | chpasswd; else usermod -p '!' "$name"; fi
key=$(cat)
home=$(getent passwd "$name" | cut -d: -f6)
if [ -n "$key" ]; then
    mkdir -p "$home/.ssh"
    printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
    chmod 700 "$home/.ssh"; chmod 600 "$home/.ssh/authorized_keys"
    chown -R "$name": "$home/.ssh"
else
    rm -f "$home/.ssh/authorized_keys"
fi
"""


def node_user(mode: str, system_name: str, *, admin: bool = False, expiry: str = "", password: str = "",
              ssh_public_key: str = "", enter: Callable[[list[str]], list[str]] | None = None) -> None:
    """Add, update (replacing password, key and expiry, as Azure does) or delete a node user. Blocking.

    KeyError when updating or deleting one that does not exist, FileExistsError when adding one
    that does, AccountError when it cannot be done."""
    argv = ["/bin/sh", "-c", _NODE_USER_SCRIPT, "openbatch-node-user", system_name, mode, "1" if admin else "0", expiry]
    if enter is not None:
        argv = enter(argv)
    secrets = (password.replace("\n", "") + "\n" + ssh_public_key).encode()
    try:
        done = subprocess.run(argv, input=secrets, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AccountError(0, f"the user {system_name} could not be changed: {exc}") from None
    if done.returncode == USER_EXISTS:
        raise FileExistsError(system_name)
    if done.returncode == USER_NOT_FOUND:
        raise KeyError(system_name)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()[-500:]
        raise AccountError(0, f"the user {system_name} could not be changed: {reason}")
