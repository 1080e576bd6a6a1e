"""The helper that starts non-admin tasks when the server is root (openbatch.node.spawner)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import uvloop

from openbatch.node import run as run_module
from openbatch.node.identity import UserSpec, prepare_dir_for, prepare_node, resolve_user
from openbatch.node.layout import NodeLayout, make_task_dir
from openbatch.node.run import CommandError, ProcessResult, RunningProcess, start_process

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
                 env: dict[str, str] | None = None) -> RunningProcess:
    task_dir = node.task_dir("job", task)
    wd = make_task_dir(task_dir)
    prepare_dir_for(user, task_dir)
    return await start_process(command, cwd=wd, env=env or {"PATH": "/usr/bin:/bin"},
                               stdout_path=task_dir / "stdout.txt", stderr_path=task_dir / "stderr.txt", user=user)


def _helpers() -> list[int]:
    return [s._proc.pid for s in run_module._spawners.values() if s.alive]


def _gone(pid: int) -> bool:
    for _ in range(1000):
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
            await start_process("/bin/true", cwd=secret, env={}, stdout_path=node.root / "o",
                                stderr_path=node.root / "e", user=user)
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
    async def go() -> int:
        proc = await _start(node, user, "sleep 300")
        run_module.close_spawners()
        result = await proc.wait(timeout=30)
        assert result.exit_code is None
        return proc.pid

    assert _gone(asyncio.run(go()))


def test_huge_environment_falls_back_to_direct_start(node: NodeLayout, user: UserSpec) -> None:
    env = {"PATH": "/usr/bin:/bin", "BIG": "x" * 100_000, "BIG2": "y" * 100_000}  # over MAX_MESSAGE together

    async def go() -> ProcessResult:
        return await (await _start(node, user, "/bin/sh -c 'id -u; echo ${#BIG}'", env=env)).wait()

    assert asyncio.run(go()).exit_code == 0
    out = (node.task_dir("job", "t") / "stdout.txt").read_text().split()
    assert out == [str(user.uid), "100000"]
