"""The engine's job side through the domain operations: preparation and release tasks, terminate,
delete, disable, onAllTasksComplete / onTaskFailure, job wall clock; and recovery after a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openbatch.batch.domain import jobs as job_ops
from openbatch.batch.domain import tasks as task_ops
from tests.engine.harness import ACCOUNT, ADMIN, Harness, cleanup, data_dir, run, scenario, sh


def job_doc(h: Harness, job_id: str) -> dict[str, Any]:
    doc = h.store.get("job", ACCOUNT, job_id)
    assert doc is not None
    return doc


def gate_cmd(gate: Path) -> str:
    return sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")


def test_job_preparation_runs_once_per_node_before_tasks_and_release_on_terminate(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p", nodes=2, slots=2)
        prep = {"commandLine": sh("echo prepared > $AZ_BATCH_NODE_SHARED_DIR/prep; date +%s%N >> $AZ_BATCH_NODE_SHARED_DIR/preps"),
                "waitForSuccess": True}
        release = {"commandLine": sh("echo released > $AZ_BATCH_NODE_SHARED_DIR/release")}
        await h.job("j", "p", jobPreparationTask=prep, jobReleaseTask=release)
        await h.add("j", *({"id": f"t{i}", "commandLine": sh("cat $AZ_BATCH_NODE_SHARED_DIR/prep; echo $AZ_BATCH_JOB_PREP_DIR")}
                           for i in range(6)))
        docs = await h.completed("j", *(f"t{i}" for i in range(6)))
        assert all(d["executionInfo"]["result"] == "success" for d in docs)
        used = {d["nodeInfo"]["nodeId"] for d in docs}
        for node_id in used:
            assert (h.node_dir(node_id) / "shared" / "preps").read_text().count("\n") == 1
        out = (h.node_dir(docs[0]["nodeInfo"]["nodeId"]) / "workitems/j/job-1/t0/stdout.txt").read_text().split()
        assert out[0] == "prepared" and out[1].endswith("workitems/j/job-1/jobpreparation")
        status = job_doc(h, "j")["_prepRelease"]
        assert set(status) == used
        for entry in status.values():
            info = entry["jobPreparationTaskExecutionInfo"]
            assert info["state"] == "completed" and info["exitCode"] == 0 and info["result"] == "success"
            assert info["taskRootDirectory"] == "workitems/j/job-1/jobpreparation"
        await job_ops.terminate_job(h.ctx, ACCOUNT, "j")
        await h.until(lambda: job_doc(h, "j")["state"] == "completed", "the job to complete")
        for node_id, entry in job_doc(h, "j")["_prepRelease"].items():
            assert entry["jobReleaseTaskExecutionInfo"]["state"] == "completed"
            assert entry["jobReleaseTaskExecutionInfo"]["exitCode"] == 0
            assert (h.node_dir(node_id) / "shared" / "release").read_text() == "released\n"
        assert job_doc(h, "j")["executionInfo"]["terminateReason"] == "UserTerminate"
        assert "endTime" in job_doc(h, "j")["executionInfo"]

    scenario(tmp_path, body)


def test_failed_preparation_with_wait_for_success_keeps_the_job_off_that_node(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p", nodes=1)
        await h.job("j", "p", jobPreparationTask={"commandLine": sh("exit 4"), "constraints": {"maxTaskRetryCount": 1}})
        await h.add("j", {"id": "t", "commandLine": "/bin/true"})
        await h.until(lambda: "_prepRelease" in job_doc(h, "j") and all(
            e["jobPreparationTaskExecutionInfo"]["state"] == "completed" for e in job_doc(h, "j")["_prepRelease"].values()),
            "the preparation task to fail")
        (entry,) = job_doc(h, "j")["_prepRelease"].values()
        info = entry["jobPreparationTaskExecutionInfo"]
        assert info.get("exitCode") == 4 and info["retryCount"] == 1 and info["result"] == "failure", info
        await h.until(lambda: h.state("j", "t") == "active", "the task back in the queue")
        task = h.task("j", "t")
        assert task["executionInfo"]["requeueCount"] == 0 and "nodeInfo" not in task
        await h.job("other", "p")
        await h.add("other", {"id": "t", "commandLine": "/bin/true"})
        await h.completed("other", "t")
        assert h.state("j", "t") == "active"

    scenario(tmp_path, body)


def test_terminate_ends_running_tasks_and_leaves_active_ones(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p")
        await h.job("j", "p")
        await h.add("j", {"id": "running", "commandLine": gate_cmd(gate)}, {"id": "waiting", "commandLine": "/bin/true"})
        await h.until(lambda: h.state("j", "running") == "running", "running")
        await job_ops.terminate_job(h.ctx, ACCOUNT, "j", {"terminateReason": "enough"})
        await h.until(lambda: job_doc(h, "j")["state"] == "completed", "the job to complete")
        ended = h.task("j", "running")
        assert ended["state"] == "completed" and ended["executionInfo"]["failureInfo"]["code"] == "TaskEnded"
        assert h.state("j", "waiting") == "active"
        assert job_doc(h, "j")["executionInfo"]["terminateReason"] == "enough"
        await h.until(lambda: h.nodes("p")[0]["state"] == "idle", "the node idle")

    scenario(tmp_path, body)


def test_delete_job_kills_its_tasks_and_the_job_disappears(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p")
        await h.job("j", "p", jobPreparationTask={"commandLine": "/bin/true"},
                    jobReleaseTask={"commandLine": sh(f"touch {h.scratch}/released"), "userIdentity": ADMIN})
        await h.add("j", {"id": "running", "commandLine": gate_cmd(gate)}, {"id": "queued", "commandLine": "/bin/true"})
        await h.until(lambda: h.state("j", "running") == "running", "running")
        node_id = h.nodes("p")[0]["id"]
        assert (h.node_dir(node_id) / "workitems" / "j").is_dir()
        await job_ops.delete_job(h.ctx, ACCOUNT, "j")
        await h.until(lambda: h.store.get("job", ACCOUNT, "j") is None, "the job to disappear")
        assert h.store.get_task(ACCOUNT, "j", "running") is None and h.store.get_task(ACCOUNT, "j", "queued") is None
        assert (h.scratch / "released").exists()
        await h.until(lambda: not (h.node_dir(node_id) / "workitems" / "j").exists(), "the job's directory removed")
        await h.until(lambda: h.nodes("p")[0]["state"] == "idle", "the node idle")

    scenario(tmp_path, body)


def test_on_all_tasks_complete_and_on_task_failure_end_the_job(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p", slots=2)
        await h.job("all", "p")
        await h.add("all", {"id": "a", "commandLine": "/bin/true"}, {"id": "b", "commandLine": sh("exit 1")})
        await h.completed("all", "a", "b")
        await job_ops.patch_job(h.ctx, ACCOUNT, "all", {"onAllTasksComplete": "terminatejob"})
        await h.until(lambda: job_doc(h, "all")["state"] == "completed", "terminatejob on a finished job")
        assert job_doc(h, "all")["executionInfo"]["terminateReason"] == "AllTasksComplete"
        await h.job("fail", "p", onTaskFailure="performexitoptionsjobaction")
        await h.add("fail", {"id": "bad", "commandLine": sh("exit 1")})
        await h.until(lambda: job_doc(h, "fail")["state"] == "completed", "the failure to end the job")
        assert job_doc(h, "fail")["executionInfo"]["terminateReason"] == "TaskFailed"
        await h.job("clock", "p", constraints={"maxWallClockTime": "PT1S"})
        await h.add("clock", {"id": "long", "commandLine": sh("sleep 30")})
        await h.until(lambda: job_doc(h, "clock")["state"] == "completed", "the job's wall clock")
        assert job_doc(h, "clock")["executionInfo"]["terminateReason"] == "MaxWallClockTimeExpiry"
        assert h.task("clock", "long")["executionInfo"]["failureInfo"]["code"] == "TaskEnded"

    scenario(tmp_path, body)


def test_disable_requeues_running_tasks_and_enable_runs_them(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p")
        await h.job("j", "p")
        await h.add("j", {"id": "t", "commandLine": gate_cmd(gate)})
        await h.until(lambda: h.state("j", "t") == "running", "running")
        await job_ops.disable_job(h.ctx, ACCOUNT, "j", {"disableTasks": "requeue"})
        await h.until(lambda: job_doc(h, "j")["state"] == "disabled", "disabled")
        assert h.state("j", "t") == "active" and h.task("j", "t")["executionInfo"]["requeueCount"] == 1
        gate.touch()
        await job_ops.enable_job(h.ctx, ACCOUNT, "j")
        (doc,) = await h.completed("j", "t")
        assert doc["executionInfo"]["result"] == "success", doc["executionInfo"]

    scenario(tmp_path, body)


def test_task_delete_and_reactivate(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p")
        await h.job("j", "p")
        await h.add("j", {"id": "gone", "commandLine": gate_cmd(gate)}, {"id": "flaky", "commandLine": sh(f"test -e {gate}")})
        await h.until(lambda: h.state("j", "gone") == "running", "running")
        node_id = h.nodes("p")[0]["id"]
        await task_ops.delete_task(h.ctx, ACCOUNT, "j", "gone")
        (flaky,) = await h.completed("j", "flaky")
        assert flaky["executionInfo"]["result"] == "failure"
        assert not (h.node_dir(node_id) / "workitems/j/job-1/gone").exists()
        gate.touch()
        await task_ops.reactivate_task(h.ctx, ACCOUNT, "j", "flaky")
        await h.until(lambda: h.task("j", "flaky").get("executionInfo", {}).get("result") == "success", "success")

    scenario(tmp_path, body)


def test_crash_and_restart_requeues_running_tasks_exactly_once(tmp_path: Path) -> None:
    scratch = data_dir(tmp_path).parent / "scratch"
    gate = scratch / "gate"
    log = scratch / "runs"

    async def first() -> None:
        h = await Harness(data_dir(tmp_path)).start()
        await h.pool("p", slots=2)
        await h.job("j", "p")
        await h.add("j", {"id": "quick", "commandLine": sh(f"echo quick >> {log}"), "userIdentity": ADMIN})
        await h.completed("j", "quick")
        await h.add("j", *({"id": f"slow{i}", "userIdentity": ADMIN,
                            "commandLine": sh(f"echo slow{i} >> {log}; while [ ! -e {gate} ]; do sleep 0.05; done")}
                           for i in range(3)))
        await h.until(lambda: sum(h.state("j", f"slow{i}") == "running" for i in range(3)) == 2, "two running")
        h.crash()

    async def second() -> None:
        h = await Harness(data_dir(tmp_path)).start()
        try:
            states = sorted((h.state("j", f"slow{i}"), h.task("j", f"slow{i}")["executionInfo"]["requeueCount"])
                            for i in range(3))
            assert h.state("j", "quick") == "completed"
            assert [c for _, c in states] == [0, 1, 1] or all(s != "completed" for s, _ in states)
            gate.touch()
            docs = await h.completed("j", "slow0", "slow1", "slow2")
            assert sorted(d["executionInfo"]["requeueCount"] for d in docs) == [0, 1, 1]
            lines = log.read_text().split()
            assert lines.count("quick") == 1
            assert sorted(lines.count(f"slow{i}") for i in range(3)) == [1, 2, 2]
            node = h.nodes("p")[0]
            assert node["state"] in ("idle", "running") and "lastBootTime" in node
        finally:
            await h.stop()

    try:
        run(first())
        run(second())
    finally:
        cleanup(tmp_path)


def test_a_job_manager_task_runs_and_its_completion_ends_the_job(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.pool("p")
        await h.job("jm", "p", onAllTasksComplete="terminatejob",
                    jobManagerTask={"id": "manager", "commandLine": sh("echo managing")})
        (doc,) = await h.completed("jm", "manager")
        assert doc["executionInfo"]["result"] == "success"
        await h.until(lambda: job_doc(h, "jm")["state"] == "completed", "the job to end with its manager")
        assert job_doc(h, "jm")["executionInfo"]["terminateReason"] == "JMComplete"

    scenario(tmp_path, body)


def test_task_dependencies_wait_for_success_or_a_satisfying_failure(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        gate = h.scratch / "gate"
        await h.pool("p", slots=4)
        job = await h.job("deps", "p", usesTaskDependencies=True)
        specs = [
            ("a", gate_cmd(gate), None, None),
            ("b", "/bin/true", {"taskIds": ["A"]}, None),  # ids match case-insensitively
            ("1", "/bin/true", None, None),
            ("2", sh("exit 2"), None, {"default": {"dependencyAction": "satisfy"}}),
            ("3", sh("exit 3"), None, None),
            ("after2", "/bin/true", {"taskIds": ["2"]}, None),
            ("after123", "/bin/true", {"taskIdRanges": [{"start": 1, "end": 3}]}, None),
            ("later", "/bin/true", {"taskIds": ["notyet"]}, None),
        ]
        docs = []
        for task_id, command, depends, exits in specs:
            doc = task_ops.build_task({"id": task_id, "commandLine": command}, job, "2026-01-01T00:00:00Z", "http://b")
            if depends:
                doc["dependsOn"] = depends
            if exits:
                doc["exitConditions"] = exits
            docs.append(doc)
        await task_ops.store_new_tasks(h.ctx, ACCOUNT, job, docs)
        await h.completed("deps", "1", "2", "3", "after2")
        assert h.state("deps", "b") == "active" and h.state("deps", "after123") == "active"
        gate.touch()
        a, b = await h.completed("deps", "a", "b")
        assert b["executionInfo"]["startTime"] >= a["executionInfo"]["endTime"]
        assert h.state("deps", "after123") == "active" and h.state("deps", "later") == "active"
        notyet = task_ops.build_task({"id": "notyet", "commandLine": "/bin/true"}, job, "2026-01-01T00:00:00Z", "http://b")
        await task_ops.store_new_tasks(h.ctx, ACCOUNT, job, [notyet])
        await h.completed("deps", "notyet", "later")
        await task_ops.reactivate_task(h.ctx, ACCOUNT, "deps", "3")  # fails again: dependents keep waiting
        await h.until(lambda: h.task("deps", "3")["executionInfo"].get("result") == "failure", "3 to fail again")
        assert h.state("deps", "after123") == "active"
        await task_ops.terminate_task(h.ctx, ACCOUNT, "deps", "after123")
        assert h.state("deps", "after123") == "completed"

    scenario(tmp_path, body)
