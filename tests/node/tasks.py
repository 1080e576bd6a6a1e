"""Starting a task process in a test as the local provider does: a task directory made with
``compute.dirs.make_task_dir`` (or an existing one), fresh stdout/stderr descriptors, start_process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from openbatch.compute.dirs import make_task_dir
from openbatch.node import safefs
from openbatch.node.identity import UserSpec, owner_of
from openbatch.node.layout import NodeLayout
from openbatch.node.run import RunningProcess, start_process

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "ONLY": "this"}

# One background process stays in the task's group; one moves to a group of its own in the same
# session (and says so only once it has); then the task ends.
LEAVER = ("/bin/sh -c 'sleep 301 & echo $! > pids; "
          "perl -e \"setpgrp(0, 0); open(F, q{>moved}); print F qq{\\$\\$}; close(F); exec qw(sleep 302)\" & "
          "while [ ! -s moved ]; do sleep 0.01; done; exit 0'")


async def start_task(command: str, task_dir: Path, *, layout: NodeLayout | None = None, user: UserSpec | None = None,
                     env: Mapping[str, str] | None = None, end_session: bool = False,
                     cwd: Path | None = None) -> RunningProcess:
    """Start ``command`` in ``task_dir/wd`` (made on ``layout`` when given, else already there)."""
    if layout is not None:
        dirs = make_task_dir(task_dir, layout, owner_of(user))
        out, err, wd = dirs.stdout, dirs.stderr, dirs.wd
    else:
        with safefs.closing(safefs.open_dir(task_dir)) as directory:
            out = safefs.create_file(directory, "stdout.txt", owner_of(user))
            err = safefs.create_file(directory, "stderr.txt", owner_of(user))
        wd = task_dir / "wd"
    try:
        return await start_process(command, cwd=cwd or wd, env=env or ENV, stdout=out, stderr=err, user=user,
                                   end_session=end_session)
    finally:
        os.close(out)
        os.close(err)


async def reaped_after_holding(pid: int, within: float = 20.0) -> bool:
    """Whether an ended task's session leader ``pid`` is an unreaped zombie now (holding its session
    id while the session is swept) and is reaped within ``within`` seconds (the loop runs meanwhile)."""
    if _state(pid) != "Z":
        return False
    deadline = asyncio.get_running_loop().time() + within
    while _state(pid) is not None:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None
