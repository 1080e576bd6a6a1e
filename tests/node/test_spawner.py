"""The helper that starts non-admin tasks when the server is root (openbatch.node.spawner)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import uvloop

from openbatch.node import run as run_module
from openbatch.node.identity import UserSpec, prepare_node, resolve_user
from openbatch.node.layout import NodeLayout
from openbatch.node.run import CommandError, ProcessResult, RunningProcess
from openbatch.node.spawner import kill_orphaned_helpers
from tests.helpers.waiting import wait_for
from tests.node.tasks import LEAVER, reaped_after_holding, start_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the spawner serves a root server")


@pytest.fixture
def node() -> Iterator[NodeLayout]:
    top = Path(tempfile.mkdtemp(prefix="openbatch-spawner-"))
    layout = NodeLayout(top / "nodes" / "n1")
    layout.create()
    prepare_node(layout.root, layout.shared, up_to=top)
    yield layout
    run_module.close_spawners()
    shutil.rmtree(top)


@pytest.fixture
def user() -> UserSpec:
    found = resolve_user("nonadmin")
    assert found is not None
    return found


async def _start(node: NodeLayout, user: UserSpec, command: str, task: str = "t",
                 env: dict[str, str] | None = None, end_session: bool = False) -> RunningProcess:
    return await start_task(command, node.task_dir("job", task), layout=node, user=user,
                            env=env or {"PATH": "/usr/bin:/bin"}, end_session=end_session)


def _helpers() -> list[int]:
    return [s._proc.pid for s in run_module._spawners.values() if s.alive]


def _gone(pid: int, tries: int = 1000) -> bool:
    for _ in range(tries):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        psutil.wait_procs([], timeout=0.01)
    return False


def test_tasks_start_through_one_helper_running_as_the_account(node: NodeLayout, user: UserSpec) -> None:
    async def go() -> list[ProcessResult]:
        procs = [await _start(node, user, "/bin/sh -c 'id -u > out; exit 4'", task=f"t{i}") for i in range(20)]
        assert len(_helpers()) == 1
        helper = psutil.Process(_helpers()[0])
        assert helper.uids().real == helper.uids().effective == user.uid
        assert helper.gids().effective == user.gid
        return [await p.wait() for p in procs]

    results = uvloop.run(go())
    assert [r.exit_code for r in results] == [4] * 20
    for i in range(20):
        assert (node.task_dir("job", f"t{i}") / "wd" / "out").read_text().strip() == str(user.uid)


def test_errors_through_the_helper(node: NodeLayout, user: UserSpec) -> None:
    async def go() -> None:
        with pytest.raises(CommandError) as info:
            await _start(node, user, "no-such-program-xyz")
        assert info.value.code == "CommandProgramNotFound"
        secret = node.root / "private"
        secret.mkdir(mode=0o700)
        with pytest.raises(CommandError) as info:
            await start_task("/bin/true", node.task_dir("job", "t"), layout=node, user=user, cwd=secret)
        assert info.value.code == "CommandLaunchFailed"
        assert (await (await _start(node, user, "/bin/true")).wait()).exit_code == 0

    asyncio.run(go())


FORKER = "/bin/sh -c 'sleep 300 & echo $! > pids; /bin/sh -c \"sleep 300 & echo \\$! >> pids; wait\" & wait'"


async def _pids(node: NodeLayout) -> list[int]:
    pids_file = node.task_dir("job", "t") / "wd" / "pids"
    for _ in range(1000):
        if pids_file.exists() and len(pids_file.read_text().split()) == 2:
            return [int(p) for p in pids_file.read_text().split()]
        await asyncio.sleep(0.01)
    raise AssertionError("children did not start")


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_timeout_and_kill_reach_grandchildren(node: NodeLayout, user: UserSpec, how: str) -> None:
    async def go() -> tuple[ProcessResult, list[int], int]:
        proc = await _start(node, user, FORKER)
        pids = await _pids(node)
        if how == "kill":
            proc.kill()
        return await proc.wait(timeout=0.2 if how == "timeout" else None), pids, proc.pid

    result, pids, leader = uvloop.run(go())
    assert result.exit_code == 137 and result.signal == signal.SIGKILL
    assert result.timed_out == (how == "timeout") and result.killed == (how == "kill")
    for pid in [leader, *pids]:
        assert _gone(pid)


def test_helper_death_is_survived(node: NodeLayout, user: UserSpec) -> None:
    async def go() -> tuple[ProcessResult, ProcessResult, list[int], int]:
        proc = await _start(node, user, "sleep 300")
        first = _helpers()
        os.kill(first[0], signal.SIGKILL)
        lost = await proc.wait(timeout=30)
        again = await (await _start(node, user, "/bin/true", task="t2")).wait()
        return lost, again, first + _helpers(), proc.pid

    lost, again, helpers, orphan = asyncio.run(go())
    assert lost.exit_code is None
    assert _gone(orphan), "the dead helper's task was left running"
    assert again.exit_code == 0
    assert len(helpers) == 2 and helpers[0] != helpers[1]


def test_closing_the_helpers_kills_their_tasks(node: NodeLayout, user: UserSpec) -> None:
    async def go() -> list[int]:
        proc = await _start(node, user, "sleep 300")
        ended = await _start(node, user, "/bin/true", end_session=True)
        await ended.wait(10)  # its first process is held unreaped until its session is swept
        run_module.close_spawners()
        result = await proc.wait(timeout=30)
        assert result.exit_code is None
        return [proc.pid, ended.pid]

    for pid in asyncio.run(go()):
        # Killed and reaped by the helper itself: an orphaned zombie would be pid 1's to reap,
        # which in containers and light VMs often never happens.
        assert not Path(f"/proc/{pid}").exists(), f"{pid} is left behind (a zombie?)"


def test_huge_environment_falls_back_to_direct_start(node: NodeLayout, user: UserSpec) -> None:
    env = {"PATH": "/usr/bin:/bin", "BIG": "x" * 100_000, "BIG2": "y" * 100_000}  # over MAX_MESSAGE together

    async def go() -> ProcessResult:
        return await (await _start(node, user, "/bin/sh -c 'id -u; echo ${#BIG}'", env=env)).wait()

    assert asyncio.run(go()).exit_code == 0
    out = (node.task_dir("job", "t") / "stdout.txt").read_text().split()
    assert out == [str(user.uid), "100000"]


def test_the_helper_ends_what_a_task_leaves_in_its_group_and_session(node: NodeLayout, user: UserSpec) -> None:
    async def go() -> list[int]:
        proc = await _start(node, user, LEAVER, end_session=True)
        assert (await proc.wait(10)).exit_code == 0
        # Its ended leader keeps the session id until the session is swept, then the helper reaps it.
        assert await reaped_after_holding(proc.pid), "the session leader was not held, or never reaped"
        wd = node.task_dir("job", "t") / "wd"
        return [int((wd / "pids").read_text()), int((wd / "moved").read_text())]

    for pid in uvloop.run(go()):
        assert _gone(pid), f"{pid} outlived its task"


def test_a_bare_program_is_found_on_path_as_the_account_finds_it(node: NodeLayout, user: UserSpec) -> None:
    for name, mode in (("closed", 0o700), ("open", 0o755)):
        directory = node.root / name
        directory.mkdir()
        (directory / "probe").write_text(f"#!/bin/sh\necho {name}\n")
        (directory / "probe").chmod(mode)
    env = {"PATH": f"{node.root}/closed:{node.root}/open:/usr/bin:/bin"}

    async def go() -> ProcessResult:
        return await (await _start(node, user, "probe", env=env)).wait()

    assert asyncio.run(go()).exit_code == 0
    assert (node.task_dir("job", "t") / "stdout.txt").read_text() == "open\n"


def test_a_helper_ends_with_its_server_even_killed_with_9(node: NodeLayout, user: UserSpec) -> None:
    import subprocess
    import sys

    server = f"""
import asyncio, sys
sys.path.insert(0, {str(Path.cwd())!r})
from openbatch.node.identity import resolve_user
from openbatch.node.layout import NodeLayout
from openbatch.node import run
from tests.node.tasks import LEAVER, start_task

async def main():
    layout = NodeLayout(__import__("pathlib").Path({str(node.root)!r}))
    proc = await start_task("sleep 306", layout.task_dir("job", "t"), layout=layout, user=resolve_user("nonadmin"))
    helper = [s._proc.pid for s in run._spawners.values()][0]
    print(helper, proc.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""
    parent = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        helper, task = (int(p) for p in parent.stdout.readline().split())
        parent.kill()
        parent.wait()
        assert _gone(helper), "the helper outlived its server"
        assert _gone(task), "the helper left its task running"
    finally:
        parent.kill()


def test_helpers_whose_server_died_are_killed_at_start(node: NodeLayout, user: UserSpec, tmp_path: Path) -> None:
    import subprocess
    import sys

    # A helper whose parent is not the server its arguments name (as after a kill -9 where the
    # parent-death signal did not reach it): a stand-in module with the helper's command line.
    fake = tmp_path / "fake" / "openbatch" / "node"
    fake.mkdir(parents=True)
    for init in (fake.parent / "__init__.py", fake / "__init__.py"):
        init.write_text("")
    (fake / "spawner.py").write_text("import time\ntime.sleep(60)\n")
    helper = subprocess.Popen([sys.executable, "-m", "openbatch.node.spawner", str(user.uid), str(user.gid), "0", "1"],
                              env={"PYTHONPATH": str(tmp_path / "fake")}, cwd=tmp_path, start_new_session=True)
    try:
        async def go() -> tuple[int, list[int]]:
            proc = await _start(node, user, "sleep 1")  # a live helper of this process, which must be left alone
            for _ in range(500):  # the stand-in is up once its command line is
                if b"openbatch.node.spawner" in Path(f"/proc/{helper.pid}/cmdline").read_bytes():
                    break
                await asyncio.sleep(0.01)
            found = kill_orphaned_helpers(), _helpers()
            assert (await proc.wait(10)).exit_code == 0
            return found

        killed, mine = asyncio.run(go())
        assert killed == 1 and helper.wait(10) == -signal.SIGKILL
        assert mine and all(not _gone(pid, tries=1) for pid in mine)
    finally:
        helper.kill()
        helper.wait()


FAKE_HELPER = "import os, sys, time\nif sys.argv[1] == 'fork':\n    os.fork()\ntime.sleep(60)\n"


def test_a_live_helpers_child_between_fork_and_exec_is_not_an_orphan(tmp_path: Path) -> None:
    """A task the helper has forked but not exec'd yet shows the helper's command line with the helper
    as its parent: killing it as an orphan failed /bin/true tasks with exit code 137."""
    fake = tmp_path / "openbatch" / "node"  # `python -m openbatch.node.spawner` from here runs this stand-in
    fake.mkdir(parents=True)
    (tmp_path / "openbatch" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "spawner.py").write_text(FAKE_HELPER)

    def helper(mode: str, server: int) -> psutil.Process:
        return psutil.Popen([sys.executable, "-m", "openbatch.node.spawner", mode, "0", "0", str(server)],
                            cwd=tmp_path)

    live = helper("fork", os.getpid())  # a helper of this (live) process, with a child just forked
    orphan = helper("stay", 1)  # a helper whose server (pid 1 here) is not its parent
    try:
        child = wait_for(lambda: live.children(), "the helper's forked child")[0]
        kill_orphaned_helpers()
        assert orphan.wait(10) == -signal.SIGKILL
        assert live.is_running() and child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    finally:
        for proc in (live, orphan):
            with contextlib.suppress(psutil.Error):
                for sub in proc.children():
                    sub.kill()
                proc.kill()
            proc.wait()
