"""The local compute provider alone: nodes as directories, runs, kills, and the Files API on them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from openbatch.compute.base import START_TASK, TASK, FileAccessError, NodeGone, RunSpec
from openbatch.compute.local import LocalProvider, kill_processes_under
from openbatch.config import Settings
from tests.helpers.waiting import alive

NODE = "tvm-1000000001_1-20260101t000000z"


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    top = Path(tempfile.mkdtemp(prefix="openbatch-compute-"))
    p = LocalProvider(Settings(data_dir=top / "data"))
    yield p
    kill_processes_under(p.root)
    shutil.rmtree(top, ignore_errors=True)


def spec(command: str, key: str = "task:j/t", **kw: Any) -> RunSpec:
    args: dict[str, Any] = {"kind": TASK, "key": key, "account": "acct", "pool_id": "pool", "node_id": NODE,
                            "command_line": command, "job_id": "j", "task_id": "t", "elevation": "admin"}
    args.update(kw)
    return RunSpec(**args)


async def until(check: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_node_has_azure_layout_and_runs_a_task_in_its_wd(provider: LocalProvider) -> None:
    async def body() -> None:
        await provider.start()
        info = await provider.create_node("acct", "pool", NODE)
        root = Path(info.root)
        assert {p.name for p in root.iterdir()} >= {"shared", "startup", "applications", "workitems"}
        outcome = await provider.run(spec("/bin/sh -c 'pwd; echo $AZ_BATCH_NODE_ID $AZ_BATCH_TASK_ID; exit 4'"))
        assert outcome.exit_code == 4 and not outcome.succeeded and outcome.failure is None
        out = (root / "workitems/j/job-1/t/stdout.txt").read_text().split()
        assert out == [str(root / "workitems/j/job-1/t/wd"), NODE, "t"]
        start = await provider.run(spec("/bin/sh -c 'echo boot'", key=START_TASK, kind=START_TASK, task_id=""))
        assert start.succeeded and (root / "startup/stdout.txt").read_text() == "boot\n"
        assert provider.task_dir("j", "t") == "workitems/j/job-1/t"
        await provider.stop()

    uvloop.run(body())


def test_kill_ends_the_whole_group_and_restart_kills_escaped_processes(provider: LocalProvider) -> None:
    async def body() -> None:
        await provider.start()
        root = Path((await provider.create_node("acct", "pool", NODE)).root)
        pidfile = root / "shared" / "pids"
        run = asyncio.ensure_future(provider.run(spec(f"/bin/sh -c 'sleep 60 & echo $! > {pidfile}; wait'")))
        await until(lambda: pidfile.exists() and pidfile.read_text().strip())
        child = int(pidfile.read_text())
        assert provider.kill(NODE, "task:j/t")
        outcome = await run
        assert outcome.killed and outcome.exit_code == 137
        await until(lambda: not alive(child))
        assert not provider.kill(NODE, "task:j/t")  # nothing left to kill
        # a process that left its group (setsid) still dies when the node restarts
        escaped = root / "shared" / "escaped"
        await provider.run(spec(f"/bin/sh -c 'setsid /bin/sh -c \"echo \\$\\$ > {escaped}; exec sleep 60\" & "
                                f"while [ ! -s {escaped} ]; do sleep 0.01; done'", key="task:j/e", task_id="e"))
        await until(lambda: escaped.exists() and escaped.read_text().strip())
        pid = int(escaped.read_text())
        assert alive(pid)
        (root / "shared" / "keep").write_text("x")
        await provider.restart_node("pool", NODE, reimage=False)
        await until(lambda: not alive(pid))
        assert (root / "shared" / "keep").exists()
        await provider.restart_node("pool", NODE, reimage=True)
        assert not (root / "shared" / "keep").exists() and (root / "shared").is_dir()
        await provider.remove_node("pool", NODE)
        assert not root.exists()
        with pytest.raises(NodeGone):
            await provider.run(spec("/bin/true"))
        await provider.stop()

    uvloop.run(body())


def test_processes_left_by_a_previous_server_die_when_the_provider_starts(provider: LocalProvider) -> None:
    node_root = provider.root / NODE
    node_root.mkdir(parents=True)
    env = {**os.environ, "AZ_BATCH_NODE_ROOT_DIR": str(node_root)}
    import subprocess

    orphan = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        uvloop.run(provider.start())
        assert orphan.wait(10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_vanished_node_directory_is_reported_not_recreated(provider: LocalProvider) -> None:
    async def body() -> None:
        await provider.start()
        root = Path((await provider.create_node("acct", "pool", NODE)).root)
        shutil.rmtree(root)
        assert not provider.node_ok(NODE)
        with pytest.raises(NodeGone):
            await provider.run(spec("/bin/true"))
        assert not root.exists()
        await provider.stop()

    uvloop.run(body())


def test_missing_program_and_wall_clock(provider: LocalProvider) -> None:
    async def body() -> None:
        await provider.start()
        await provider.create_node("acct", "pool", NODE)
        missing = await provider.run(spec("/no/such/program"))
        assert missing.preprocessing and missing.failure and missing.failure["code"] == "CommandProgramNotFound"
        slow = await provider.run(spec("/bin/sleep 30", max_wall_clock=0.3))
        assert slow.timed_out and slow.failure and slow.failure["code"] == "TaskEnded"
        await provider.stop()

    uvloop.run(body())


def test_files_api_lists_reads_ranges_and_refuses_paths_outside_the_node(provider: LocalProvider) -> None:
    async def body() -> None:
        await provider.start()
        root = Path((await provider.create_node("acct", "pool", NODE)).root)
        await provider.run(spec("/bin/sh -c 'printf 0123456789; mkdir -p deep/er; echo x > deep/er/f'"))
        names = {f.path for f in await provider.list_files("pool", NODE, "workitems/j/job-1/t", recursive=True)}
        assert {"workitems/j/job-1/t/stdout.txt", "workitems/j/job-1/t/wd/deep/er/f"} <= names
        flat = {f.path for f in await provider.list_files("pool", NODE, "workitems/j/job-1/t", recursive=False)}
        assert flat == {"workitems/j/job-1/t/stdout.txt", "workitems/j/job-1/t/stderr.txt", "workitems/j/job-1/t/wd"}
        stat = await provider.stat_file("pool", NODE, "workitems/j/job-1/t/stdout.txt")
        assert stat.size == 10 and not stat.is_directory
        opened = await provider.open_file("pool", NODE, "workitems/j/job-1/t/stdout.txt")
        assert opened.info == stat
        assert b"".join([c async for c in opened.read(2, 5)]) == b"2345"
        opened = await provider.open_file("pool", NODE, "workitems/j/job-1/t/stdout.txt")
        assert b"".join([c async for c in opened.read(7, None)]) == b"789"
        os.symlink("/etc", root / "shared" / "escape")
        for bad in ("../x", "/etc/passwd", "shared/escape/passwd", "shared/%2e%2e/x"):
            with pytest.raises(FileAccessError) as info:
                await provider.stat_file("pool", NODE, bad)
            assert info.value.code == "PathOutsideNode", bad
        for missing in ("nothing.txt", "shared/nope"):
            with pytest.raises(FileAccessError) as info:
                await provider.stat_file("pool", NODE, missing)
            assert info.value.code == "FileNotFound"
        with pytest.raises(FileAccessError):
            await provider.list_files("other-pool", NODE, "", recursive=False)
        with pytest.raises(FileAccessError) as info:
            await provider.delete_file("pool", NODE, "workitems/j/job-1/t/wd/deep", recursive=False)
        assert info.value.code == "DirectoryNotEmpty"
        await provider.delete_file("pool", NODE, "workitems/j/job-1/t/wd/deep", recursive=True)
        assert not (root / "workitems/j/job-1/t/wd/deep").exists()
        provider.remove_task_dir(NODE, "j", "t")
        assert not (root / "workitems/j/job-1/t").exists()
        await provider.stop()

    uvloop.run(body())


def test_files_api_follows_links_only_inside_the_node(provider: LocalProvider, tmp_path: Path) -> None:
    async def body() -> None:
        await provider.start()
        root = Path((await provider.create_node("acct", "pool", NODE)).root)
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"s" * 4321)
        await provider.run(spec(f"/bin/sh -c 'echo inside > here; ln -s here in; ln -s {outside}/secret out; "
                                f"ln -s {outside} outdir; ln -s ../wd loop'"))
        wd = "workitems/j/job-1/t/wd"
        assert (await provider.stat_file("pool", NODE, f"{wd}/in")).size == len("inside\n")
        opened = await provider.open_file("pool", NODE, f"{wd}/in")
        assert b"".join([c async for c in opened.read(0, None)]) == b"inside\n"
        for bad in (f"{wd}/out", f"{wd}/outdir/secret"):
            with pytest.raises(FileAccessError) as info:
                await provider.open_file("pool", NODE, bad)
            assert info.value.code == "PathOutsideNode", bad
        listed = {f.path: f for f in await provider.list_files("pool", NODE, wd, recursive=True)}
        assert set(listed) == {f"{wd}/here", f"{wd}/in", f"{wd}/loop"}  # the links out are left out
        assert listed[f"{wd}/in"].size == len("inside\n") and listed[f"{wd}/loop"].is_directory
        await provider.delete_file("pool", NODE, f"{wd}/out", recursive=False)
        await provider.delete_file("pool", NODE, f"{wd}/outdir", recursive=True)
        assert (outside / "secret").read_bytes() == b"s" * 4321  # the links went, not what they point at
        assert not os.path.lexists(root / wd / "out") and not os.path.lexists(root / wd / "outdir")
        await provider.stop()

    uvloop.run(body())
