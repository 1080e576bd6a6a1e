from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvloop

from openbatch.node.run import CommandError, ProcessResult, RunningProcess
from openbatch.node.sweep import kill_sessions
from tests.node.tasks import ENV, LEAVER, reaped_after_holding, start_task

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Every test runs on the plain asyncio loop and on uvloop (the server's loop)."""
    return asyncio.run if request.param == "asyncio" else uvloop.run


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    (tmp_path / "task" / "wd").mkdir(parents=True)
    return tmp_path / "task"


async def _start(command: str, task_dir: Path, env: dict[str, str] | None = None,
                 end_session: bool = False) -> RunningProcess:
    return await start_task(command, task_dir, env=env, end_session=end_session)


async def _run(command: str, task_dir: Path, timeout: float | None = None, env: dict[str, str] | None = None) -> ProcessResult:
    proc = await _start(command, task_dir, env)
    return await proc.wait(timeout)


@pytest.fixture(autouse=True)
def _no_orphans(task_dir: Path) -> Any:
    """A failing kill test must not leave its sleepers behind."""
    yield
    pids_file = task_dir / "wd" / "pids"
    for pid in pids_file.read_text().split() if pids_file.exists() else []:
        if not _dead(int(pid)):
            os.kill(int(pid), 9)


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _gone(pid: int, grace: float = 10.0) -> bool:
    """Dead (or a zombie): SIGKILL is delivered at once but a loaded machine may take a moment to act on it."""
    deadline = time.monotonic() + grace
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_exit_codes_and_output_files(run: Runner, task_dir: Path) -> None:
    ok = run(_run("/bin/true", task_dir))
    assert ok.exit_code == 0 and not ok.timed_out and not ok.killed and ok.signal is None
    assert ok.started <= ok.ended
    result = run(_run("/bin/sh -c 'echo out; echo err >&2; exit 3'", task_dir))
    assert result.exit_code == 3
    assert (task_dir / "stdout.txt").read_text() == "out\n"
    assert (task_dir / "stderr.txt").read_text() == "err\n"


def test_no_shell_words_split_like_posix_and_program_found_in_path(run: Runner, task_dir: Path) -> None:
    run(_run("""printf '%s|' "a b" 'c d' e\\ f '$HOME' *""", task_dir))
    assert (task_dir / "stdout.txt").read_text() == "a b|c d|e f|$HOME|*|"


def test_cwd_and_exact_environment(run: Runner, task_dir: Path) -> None:
    run(_run("/bin/sh -c 'pwd; env'", task_dir))
    lines = (task_dir / "stdout.txt").read_text().splitlines()
    assert lines[0] == str(task_dir / "wd")
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["ONLY"] == "this"
    assert set(env) - {"PWD", "SHLVL", "_", "OLDPWD"} == set(ENV)


def test_relative_program_runs_from_the_working_directory(run: Runner, task_dir: Path) -> None:
    script = task_dir / "wd" / "hello.sh"
    script.write_text("#!/bin/sh\necho hello $1\n")
    script.chmod(0o755)
    assert run(_run("./hello.sh world", task_dir)).exit_code == 0
    assert (task_dir / "stdout.txt").read_text() == "hello world\n"


@pytest.mark.parametrize("command", ["no-such-program-xyz arg", "/nonexistent/bin/prog", "./missing.sh"])
def test_missing_program_is_command_program_not_found(run: Runner, task_dir: Path, command: str) -> None:
    with pytest.raises(CommandError) as info:
        run(_start(command, task_dir))
    assert info.value.code == "CommandProgramNotFound"


def test_program_that_cannot_be_executed(run: Runner, task_dir: Path) -> None:
    (task_dir / "wd" / "data.txt").write_text("not a program")
    with pytest.raises(CommandError) as info:
        run(_start("./data.txt", task_dir))
    assert info.value.code == "CommandLaunchFailed"


@pytest.mark.parametrize("command", ["", "   ", "echo 'unbalanced"])
def test_empty_or_unparsable_command_line(run: Runner, task_dir: Path, command: str) -> None:
    with pytest.raises(CommandError) as info:
        run(_start(command, task_dir))
    assert info.value.code == "CommandLaunchFailed"


def test_missing_working_directory_is_a_launch_failure(run: Runner, tmp_path: Path) -> None:
    async def go() -> None:
        await start_task("/bin/true", tmp_path, cwd=tmp_path / "nope")

    with pytest.raises(CommandError) as info:
        run(go())
    assert info.value.code == "CommandLaunchFailed"


FORKER = "/bin/sh -c 'sleep 300 & echo $! > pids; /bin/sh -c \"sleep 300 & echo \\$! >> pids; wait\" & wait'"


async def _pids_when_ready(task_dir: Path) -> list[int]:
    pids_file = task_dir / "wd" / "pids"
    for _ in range(500):
        if pids_file.exists():
            pids = [int(p) for p in pids_file.read_text().split()]
            if len(pids) == 2:
                return pids
        await asyncio.sleep(0.01)
    raise AssertionError("children did not start")


def test_timeout_kills_the_whole_tree(run: Runner, task_dir: Path) -> None:
    async def go() -> tuple[ProcessResult, list[int], int]:
        proc = await _start(FORKER, task_dir)
        pids = await _pids_when_ready(task_dir)
        return await proc.wait(timeout=0.2), pids, proc.pid

    result, pids, leader = run(go())
    assert result.timed_out and not result.killed
    assert result.signal == 9 and result.exit_code == 137
    assert _gone(leader)
    for pid in pids:
        assert _gone(pid), f"grandchild {pid} survived"


def test_kill_kills_the_whole_tree_and_is_idempotent(run: Runner, task_dir: Path) -> None:
    async def go() -> tuple[ProcessResult, list[int]]:
        proc = await _start(FORKER, task_dir)
        pids = await _pids_when_ready(task_dir)
        proc.kill()
        result = await proc.wait()
        proc.kill()
        return result, pids

    result, pids = run(go())
    assert result.killed and not result.timed_out and result.exit_code == 137
    for pid in pids:
        assert _gone(pid)


def test_wait_without_timeout_and_twice(run: Runner, task_dir: Path) -> None:
    async def go() -> tuple[ProcessResult, ProcessResult]:
        proc = await _start("/bin/sh -c 'exit 7'", task_dir)
        return await proc.wait(), await proc.wait(timeout=5)

    first, second = run(go())
    assert first.exit_code == second.exit_code == 7


def test_many_concurrent_processes(run: Runner, tmp_path: Path) -> None:
    async def one(i: int) -> int | None:
        task_dir = tmp_path / str(i)
        (task_dir / "wd").mkdir(parents=True)
        return (await _run(f"/bin/sh -c 'exit {i % 5}'", task_dir)).exit_code

    async def go() -> list[int | None]:
        return list(await asyncio.gather(*(one(i) for i in range(60))))

    assert run(go()) == [i % 5 for i in range(60)]


def test_stdout_flood_does_not_grow_server_memory(task_dir: Path) -> None:
    me = psutil.Process()
    before = me.memory_info().rss
    result = uvloop.run(_run("/bin/sh -c 'head -c 200000000 /dev/zero; head -c 50000000 /dev/zero >&2'", task_dir))
    grown = me.memory_info().rss - before
    assert result.exit_code == 0
    assert (task_dir / "stdout.txt").stat().st_size == 200_000_000
    assert (task_dir / "stderr.txt").stat().st_size == 50_000_000
    assert grown < 20 * 2**20, f"RSS grew by {grown} bytes"


@pytest.mark.parametrize("pidfd", [True, False])
def test_what_a_task_leaves_in_its_group_and_session_is_killed_when_it_ends(
        run: Runner, task_dir: Path, pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:  # the end is polled (waitid without reaping, then the group kill); no session sweep
        monkeypatch.setattr(os, "pidfd_open", _no_pidfd)

    async def go() -> tuple[int, int]:
        proc = await _start(LEAVER, task_dir, end_session=True)
        assert (await proc.wait(10)).exit_code == 0
        if pidfd:  # its ended leader keeps the session id until the session is swept, then is reaped
            assert await reaped_after_holding(proc.pid), "the session leader was not held, or never reaped"
        return int((task_dir / "wd" / "pids").read_text()), int((task_dir / "wd" / "moved").read_text())

    in_group, in_session = run(go())
    assert _gone(in_group), "the task's group outlived it"
    if pidfd:
        assert _gone(in_session), "the task's session outlived it"
    else:  # without pidfds a process cannot be pinned before it is signalled: left alone
        os.kill(in_session, 9)


def test_a_session_whose_id_was_taken_by_a_new_process_is_not_swept() -> None:
    # Once a task's session leader is reaped, the kernel may give its pid to any new process, which
    # can lead a session of that id: that session is not the task's and must not be swept.
    newcomer = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert kill_sessions({newcomer.pid}) == 0
        assert newcomer.poll() is None, "a process outside the task's session was killed"
    finally:
        newcomer.kill()
        newcomer.wait()


def test_without_ending_the_session_background_processes_keep_running(task_dir: Path) -> None:
    async def go() -> int:
        proc = await _start("/bin/sh -c 'sleep 303 & echo $! > pids'", task_dir)
        await proc.wait(10)
        return int((task_dir / "wd" / "pids").read_text())

    pid = uvloop.run(go())
    assert not _dead(pid)  # a start task may leave a service running, as on Azure
    os.kill(pid, 9)


def test_python_children_see_no_server_descriptors(task_dir: Path) -> None:
    code = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    asyncio.run(_run(f"{sys.executable} -c \"{code}\"", task_dir))
    fds = eval((task_dir / "stdout.txt").read_text())
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # 0-2 plus the listdir handle
    assert os.path.exists(task_dir / "stderr.txt")


def _no_pidfd(pid: int, flags: int = 0) -> int:
    raise OSError(38, "Function not implemented")


def test_without_pidfds_the_end_is_polled(run: Runner, task_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "pidfd_open", _no_pidfd)
    assert run(_run("/bin/sh -c 'sleep 0.05; exit 5'", task_dir)).exit_code == 5
    result = run(_run("sleep 300", task_dir, timeout=0.1))
    assert result.timed_out and result.exit_code == 137
