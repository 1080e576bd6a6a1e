"""The engine with the local provider, driven through the domain operations (no HTTP): nodes,
start tasks, task execution, retries, timeouts, terminate, placement, slots."""

from __future__ import annotations

import os
from pathlib import Path

from openbatch.batch.domain import nodes as node_ops
from openbatch.batch.domain import pools as pool_ops
from openbatch.batch.domain import tasks as task_ops
from tests.engine.harness import ACCOUNT, ADMIN, Harness, scenario, sh
from tests.helpers.waiting import alive


def read(h: Harness, node_id: str, rel: str) -> str:
    return (h.node_dir(node_id) / rel).read_text()


def test_pool_nodes_come_up_idle_and_tasks_run_with_their_environment(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        pool = await h.pool("p", nodes=2, slots=2)
        assert pool["id"] == "p"
        stored = h.store.get("pool", ACCOUNT, "p")
        assert stored is not None and stored["currentDedicatedNodes"] == 2 and stored["allocationState"] == "steady"
        nodes = h.nodes("p")
        assert all(n["state"] == "idle" and n["schedulingState"] == "enabled" for n in nodes)
        assert all(h.node_dir(n["id"]).joinpath("shared").is_dir() for n in nodes)
        await h.job("j", "p", commonEnvironmentSettings=[{"name": "COMMON", "value": "c"}])
        await h.add("j", {"id": "ok", "commandLine": sh("echo $AZ_BATCH_TASK_ID $AZ_BATCH_JOB_ID $COMMON $OWN; pwd"),
                          "environmentSettings": [{"name": "OWN", "value": "o"}]},
                    {"id": "bad", "commandLine": sh("echo oops >&2; exit 3")})
        ok, bad = await h.completed("j", "ok", "bad")
        assert ok["executionInfo"]["result"] == "success" and ok["executionInfo"]["exitCode"] == 0, (
            ok["executionInfo"], read(h, ok["nodeInfo"]["nodeId"], "workitems/j/job-1/ok/stderr.txt"))
        assert ok["executionInfo"]["startTime"] <= ok["executionInfo"]["endTime"]
        assert ok["previousState"] == "running"
        info = ok["nodeInfo"]
        assert info["poolId"] == "p" and info["taskRootDirectory"] == "workitems/j/job-1/ok"
        assert info["taskRootDirectoryUrl"].endswith(f"/pools/p/nodes/{info['nodeId']}/files/workitems/j/job-1/ok")
        out = read(h, info["nodeId"], "workitems/j/job-1/ok/stdout.txt").split()
        assert out[:4] == ["ok", "j", "c", "o"] and out[4].endswith("workitems/j/job-1/ok/wd")
        assert bad["executionInfo"]["exitCode"] == 3 and bad["executionInfo"]["result"] == "failure"
        assert bad["executionInfo"]["failureInfo"]["code"] == "FailureExitCode"
        assert read(h, bad["nodeInfo"]["nodeId"], "workitems/j/job-1/bad/stderr.txt") == "oops\n"
        await h.until(lambda: all(n["state"] == "idle" and n["runningTasksCount"] == 0 for n in h.nodes("p")),
                      "nodes idle again")
        assert sum(n["totalTasksRun"] for n in h.nodes("p")) == 2
        assert sum(n["totalTasksSucceeded"] for n in h.nodes("p")) == 1

    scenario(tmp_path, body)


def test_missing_program_and_unparsable_command_complete_with_failure_info(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p")
        await h.job("j", "p", constraints={"maxTaskRetryCount": 3})
        await h.add("j", {"id": "missing", "commandLine": "/no/such/program --flag"},
                    {"id": "bare", "commandLine": "no-such-program-anywhere"})
        for doc in await h.completed("j", "missing", "bare"):
            info = doc["executionInfo"]
            assert info["failureInfo"]["code"] == "CommandProgramNotFound", info
            assert info["failureInfo"]["category"] == "usererror"
            assert info["result"] == "failure" and "exitCode" not in info and info["retryCount"] == 0

    scenario(tmp_path, body)


def test_start_task_waits_for_success_and_failure_keeps_tasks_away(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        good = {"commandLine": sh("echo ready > $AZ_BATCH_NODE_SHARED_DIR/flag"), "waitForSuccess": True,
                "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}}
        await h.pool("good", startTask=good)
        node = h.nodes("good")[0]
        assert node["startTaskInfo"]["state"] == "completed" and node["startTaskInfo"]["exitCode"] == 0
        assert node["startTaskInfo"]["result"] == "success"
        assert read(h, node["id"], "shared/flag") == "ready\n"
        bad = {"commandLine": sh("echo try >> $AZ_BATCH_NODE_SHARED_DIR/tries; exit 7"), "maxTaskRetryCount": 1}
        await h.pool("bad", startTask=bad)
        node = h.nodes("bad")[0]
        assert node["state"] == "starttaskfailed"
        info = node["startTaskInfo"]
        assert info["exitCode"] == 7 and info["retryCount"] == 1 and info["result"] == "failure"
        assert read(h, node["id"], "shared/tries") == "try\ntry\n"
        await h.job("j", "bad")
        await h.add("j", {"id": "t", "commandLine": "/bin/true"})
        await h.until(lambda: h.engine.scheduler.free_slots(("devstoreaccount1", "bad")) == 0, "nothing usable")
        assert h.state("j", "t") == "active"

    scenario(tmp_path, body)


def test_retries_then_failure_and_unlimited_retries_until_success(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p", slots=2)
        await h.job("j", "p")
        counter = h.scratch / "count"
        await h.add("j", {"id": "fails", "commandLine": sh("exit 2"), "constraints": {"maxTaskRetryCount": 2}},
                    {"id": "third", "constraints": {"maxTaskRetryCount": -1},
                     "commandLine": sh(f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"), "userIdentity": ADMIN})
        fails, third = await h.completed("j", "fails", "third")
        assert fails["executionInfo"]["retryCount"] == 2 and fails["executionInfo"]["exitCode"] == 2
        assert fails["executionInfo"]["lastRetryTime"] == fails["executionInfo"]["startTime"]
        assert third["executionInfo"]["retryCount"] == 2 and third["executionInfo"]["result"] == "success"

    scenario(tmp_path, body)


def test_wall_clock_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p")
        await h.job("j", "p")
        pids = h.scratch / "pids"
        await h.add("j", {"id": "slow", "constraints": {"maxWallClockTime": "PT0.5S", "maxTaskRetryCount": 3},
                          "commandLine": sh(f"sleep 60 & echo $! > {pids}; wait"), "userIdentity": ADMIN})
        (doc,) = await h.completed("j", "slow")
        info = doc["executionInfo"]
        assert info["failureInfo"]["code"] == "TaskEnded" and "Wall Clock" in info["failureInfo"]["message"]
        assert info["result"] == "failure" and info["retryCount"] == 0
        child = int(pids.read_text())
        await h.until(lambda: not alive(child), "the background child to be killed")

    scenario(tmp_path, body)


def test_terminate_kills_a_running_task_and_its_children(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p")
        await h.job("j", "p")
        pids = h.scratch / "pids"
        await h.add("j", {"id": "long", "commandLine": sh(f"sleep 60 & echo $! > {pids}; wait"), "userIdentity": ADMIN})
        await h.until(lambda: pids.exists() and pids.read_text().strip() != "", "the task to start")
        await task_ops.terminate_task(h.ctx, ACCOUNT, "j", "long")
        await h.until(lambda: not alive(int(pids.read_text())), "its child to be killed")
        await h.until(lambda: h.nodes("p")[0]["state"] == "idle", "the node to be idle")
        doc = h.task("j", "long")
        assert doc["state"] == "completed" and doc["executionInfo"]["failureInfo"]["code"] == "TaskEnded"
        assert doc["executionInfo"]["exitCode"] == 137

    scenario(tmp_path, body)


def test_spread_and_pack_placement_and_required_slots(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        wait = sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")
        await h.pool("spread", nodes=2, slots=2)
        await h.pool("pack", nodes=2, slots=2, taskSchedulingPolicy={"nodeFillType": "pack"})
        for pool in ("spread", "pack"):
            await h.job(pool, pool)
            await h.add(pool, *({"id": f"t{i}", "commandLine": wait} for i in range(2)))
        await h.until(lambda: all(h.state(p, f"t{i}") == "running" for p in ("spread", "pack") for i in range(2)),
                      "tasks running")
        spread = {h.task("spread", f"t{i}")["nodeInfo"]["nodeId"] for i in range(2)}
        pack = {h.task("pack", f"t{i}")["nodeInfo"]["nodeId"] for i in range(2)}
        assert len(spread) == 2 and len(pack) == 1
        gate.touch()
        await h.completed("pack", "t0", "t1")
        gate.unlink()
        await h.add("pack", *({"id": f"big{i}", "commandLine": wait, "requiredSlots": 2} for i in range(3)))
        await h.until(lambda: sum(h.state("pack", f"big{i}") == "running" for i in range(3)) == 2, "two big tasks")
        assert h.state("pack", "big2") == "active"
        busy = {n["id"]: n["runningTaskSlotsCount"] for n in h.nodes("pack")}
        assert sorted(busy.values()) == [2, 2]
        gate.touch()
        await h.completed("pack", "big0", "big1", "big2")

    scenario(tmp_path, body)


def test_resize_down_requeues_the_tasks_of_removed_nodes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p", nodes=2)
        await h.job("j", "p")
        await h.add("j", *({"id": f"t{i}", "commandLine": sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")}
                           for i in range(2)))
        await h.until(lambda: all(h.state("j", f"t{i}") == "running" for i in range(2)), "both running")
        await pool_ops.resize_pool(h.ctx, ACCOUNT, "p", {"targetDedicatedNodes": 1, "nodeDeallocationOption": "requeue"})
        await h.until(lambda: h.steady("p", 1), "the pool to shrink")
        gate.touch()
        docs = await h.completed("j", "t0", "t1")
        assert sorted(d["executionInfo"]["requeueCount"] for d in docs) == [0, 1]
        assert all(d["executionInfo"]["result"] == "success" for d in docs), [d["executionInfo"] for d in docs]
        pool = h.store.get("pool", ACCOUNT, "p")
        assert pool is not None and pool["currentDedicatedNodes"] == 1

    scenario(tmp_path, body)


def test_reboot_requeues_running_tasks_and_reruns_the_start_task_and_reimage_wipes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p", startTask={"commandLine": sh("date +%s%N >> $AZ_BATCH_NODE_SHARED_DIR/boots")})
        node_id = h.nodes("p")[0]["id"]
        await h.job("j", "p")
        await h.add("j", {"id": "t", "commandLine": sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")})
        await h.until(lambda: h.state("j", "t") == "running", "running")
        await node_ops.restart_node(h.ctx, ACCOUNT, "p", node_id, {"nodeRebootOption": "requeue"}, reimage=False)
        await h.until(lambda: read(h, node_id, "shared/boots").count("\n") == 2, "the start task to rerun")
        await h.until(lambda: h.state("j", "t") == "running", "the task to run again")
        assert h.task("j", "t")["executionInfo"]["requeueCount"] == 1
        gate.touch()
        await h.completed("j", "t")
        (h.node_dir(node_id) / "shared" / "extra").write_text("x")
        await node_ops.restart_node(h.ctx, ACCOUNT, "p", node_id, {}, reimage=True)
        await h.until(lambda: h.nodes("p")[0]["state"] == "idle" and (h.node_dir(node_id) / "shared" / "boots").exists(),
                      "the node back after reimage")
        assert not (h.node_dir(node_id) / "shared" / "extra").exists()
        assert read(h, node_id, "shared/boots").count("\n") == 1

    scenario(tmp_path, body)


def test_disable_scheduling_takes_the_node_offline_and_enable_brings_work_back(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p")
        node_id = h.nodes("p")[0]["id"]
        await node_ops.disable_scheduling(h.ctx, ACCOUNT, "p", node_id, {})
        assert h.nodes("p")[0]["state"] == "offline"
        await h.job("j", "p")
        await h.add("j", {"id": "t", "commandLine": "/bin/true"})
        await h.until(lambda: h.engine._kicked is False, "a pass")
        assert h.state("j", "t") == "active"
        await node_ops.enable_scheduling(h.ctx, ACCOUNT, "p", node_id)
        await h.completed("j", "t")

    scenario(tmp_path, body)


def test_a_node_directory_removed_behind_our_back_makes_the_node_unusable(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        import shutil

        await h.pool("p", nodes=2)
        first, second = (n["id"] for n in h.nodes("p"))
        shutil.rmtree(h.node_dir(first))
        await h.job("j", "p")
        await h.add("j", *({"id": f"t{i}", "commandLine": "/bin/true"} for i in range(4)))
        await h.completed("j", *(f"t{i}" for i in range(4)))
        states = {n["id"]: n["state"] for n in h.nodes("p")}
        assert states[first] == "unusable" and states[second] == "idle"
        assert all(h.task("j", f"t{i}")["nodeInfo"]["nodeId"] == second for i in range(4))
        assert os.path.isdir(h.node_dir(second))

    scenario(tmp_path, body)


def test_a_node_found_gone_by_one_run_requeues_its_other_runs_once(tmp_path: Path) -> None:
    """The run that finds its node's directory gone is requeued once, with the node's other runs:
    none of them is finished twice (which once stranded tasks in an impossible active -> active)."""
    async def body(h: Harness) -> None:
        import shutil

        await h.pool("p", nodes=2, slots=2, taskSchedulingPolicy={"nodeFillType": "pack"})
        await h.job("j", "p")
        await h.add("j", {"id": "long", "commandLine": "/bin/sleep 2"})
        await h.until(lambda: h.state("j", "long") == "running", "the long task to run")
        victim = h.task("j", "long")["nodeInfo"]["nodeId"]
        shutil.rmtree(h.node_dir(victim))
        await h.add("j", {"id": "b", "commandLine": "/bin/true"})
        done = await h.completed("j", "long", "b", timeout=60)
        states = {n["id"]: n["state"] for n in h.nodes("p")}
        assert states[victim] == "unusable", states
        assert all(t["nodeInfo"]["nodeId"] != victim for t in done)
        assert all(t["executionInfo"]["requeueCount"] <= 1 for t in done), [t["executionInfo"] for t in done]

    scenario(tmp_path, body)
