"""Which OS account a task runs as.

When the server runs as root, tasks with ``elevationLevel: admin`` run as root and non-admin
tasks (the default) run as an unprivileged account: ``_azbatch`` (the name Azure's Linux nodes
use), created as a system user on first need, or ``nobody`` when it cannot be created. When the
server is not root every task runs as the server's own user (there is nothing to switch to).

Tasks running as another user must be able to reach their directories: :func:`owner_of` says who
a task's files belong to (the provider hands them over with :mod:`openbatch.node.safefs`, never
following a link), :func:`grant_traverse` lets the account walk down to the node root.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from openbatch.node.safefs import Owner

log = logging.getLogger(__name__)

TASK_USER = "_azbatch"
FALLBACK_USER = "nobody"


@dataclass(frozen=True)
class UserSpec:
    """An OS account to run a task as."""

    name: str
    uid: int
    gid: int
    is_admin: bool

    def is_current(self) -> bool:
        """True when running as this account needs no switch."""
        return self.uid == os.geteuid() and self.gid == os.getegid()


def is_root() -> bool:
    return os.geteuid() == 0


def current_user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def resolve_user(elevation: str | None) -> UserSpec | None:
    """The account for an elevation level (``admin`` / ``nonadmin``, any case); None when not root."""
    if not is_root():
        return None
    if (elevation or "nonadmin").lower() == "admin":
        return UserSpec(name="root", uid=0, gid=0, is_admin=True)
    return task_user()


@cache
def task_user() -> UserSpec:
    """The unprivileged account for non-admin tasks (created once if missing). Call as root."""
    entry = _lookup(TASK_USER) or _create_system_user(TASK_USER) or _lookup(FALLBACK_USER)
    if entry is None:  # no nobody either: a numeric id nobody owns
        return UserSpec(name=FALLBACK_USER, uid=65534, gid=65534, is_admin=False)
    return UserSpec(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, is_admin=False)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create_system_user(name: str) -> pwd.struct_passwd | None:
    useradd = shutil.which("useradd")
    if useradd is None:
        return None
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(p)), "/bin/false")
    cmd = [useradd, "--system", "--no-create-home", "--user-group", "--shell", nologin, name]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot create task user %s: %s", name, exc)
        return None
    if done.returncode != 0:
        log.warning("cannot create task user %s: %s", name, done.stderr.decode(errors="replace").strip())
    return _lookup(name)


def needs_switch(user: UserSpec | None) -> bool:
    return user is not None and not user.is_current()


def owner_of(user: UserSpec | None) -> Owner | None:
    """Who a task's files belong to: its account when the server runs as root (root itself for
    admin tasks, so that a directory a non-admin run once owned is taken back), else None (the
    server's own user, nothing to change)."""
    if user is None or not is_root():
        return None
    return Owner(user.uid, user.gid)


def grant_traverse(path: Path, up_to: Path) -> None:
    """Add search permission for others on ``path`` and its parents up to and including ``up_to``.

    Only the execute (search) bit is added: other accounts can walk through, not list. Called
    for a node root so that a non-admin task user can reach its working directory and the shared
    directory by absolute path.
    """
    path = path.absolute()
    up_to = up_to.absolute()
    for current in (path, *path.parents):
        mode = current.stat().st_mode
        if not mode & stat.S_IXOTH:
            current.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        if current == up_to:
            break


def share_dir(path: Path) -> None:
    """Make the node's shared dir writable by every task account and owned by their group.

    Sticky like /tmp, and set-group-id so that what any task writes there (an elevated start
    task's ``cp`` of a program, say, whose 0770 resource-file mode keeps group access) belongs to
    the task group and can be used by non-admin tasks, as on Azure's nodes.
    """
    os.chown(path, -1, task_user().gid)
    path.chmod(0o3777)


def prepare_node(root: Path, shared: Path, up_to: Path) -> None:
    """Ready a node's tree for task accounts when the server is root: reachable, shared dir writable.

    ``up_to`` is the highest directory to open for traversal (the server's data dir). No-op when
    the server is not root (every task then runs as the server's own user).
    """
    if not is_root():
        return
    grant_traverse(root, up_to)
    share_dir(shared)
