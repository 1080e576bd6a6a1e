"""Autoscale formulas, evaluated, through azure-batch 15.x (BatchClient) and 14.2 (its cached venv)
against a live server on the test clock: pools created with autoscale, enable / evaluate / disable,
Azure's results and error shapes, and the periodic evaluation resizing the pool as tasks come and
go, with ``advance_clock(300)`` instead of waiting five minutes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpResponse

from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script
from tests.helpers.waiting import wait_for

VM = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="Canonical", offer="0001-com-ubuntu-server-jammy",
                                             sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
FIVE_MINUTES = timedelta(minutes=5)

# The documented "pending tasks" formula (learn.microsoft.com, Sample autoscale formulas), starting at
# no node and capped at two.
PENDING = """startingNumberOfVMs = 0;
maxNumberofVMs = 2;
pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);
pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : avg($PendingTasks.GetSample(180 * TimeInterval_Second));
$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);
$NodeDeallocationOption = taskcompletion;"""


TEST_CLOCK = True  # the module's server (tests/conftest.py) runs on the test clock


def create(client: BatchClient, pool_id: str, **kw: Any) -> bm.BatchPool:
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                 virtual_machine_configuration=VM, **kw))
    return client.get_pool(pool_id)


def refusal(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, str | None, dict[str, str]]:
    with pytest.raises(HttpResponseError) as info:
        fn(*args, **kwargs)
    response = info.value.response
    assert isinstance(response, HttpResponse)
    body = response.json()
    return info.value.status_code or 0, body.get("code"), {v["key"]: v["value"] for v in body.get("values", [])}


def steady(client: BatchClient, pool_id: str, dedicated: int) -> bm.BatchPool:
    def check() -> bm.BatchPool | None:
        pool = client.get_pool(pool_id)
        ready = pool.allocation_state == bm.AllocationState.STEADY and pool.current_dedicated_nodes == dedicated
        return pool if ready else None

    pool: bm.BatchPool = wait_for(check, f"{pool_id} steady at {dedicated} nodes")
    return pool


def next_run(client: BatchClient, pool_id: str, before: Any) -> bm.AutoScaleRun:
    """The pool's autoscale run after the one stamped ``before``."""
    def check() -> bm.AutoScaleRun | None:
        run = client.get_pool(pool_id).auto_scale_run
        return run if run is not None and run.timestamp != before else None

    run: bm.AutoScaleRun = wait_for(check, f"a new autoscale run of {pool_id}")
    return run


def test_a_pool_created_with_autoscale_is_evaluated_at_once(client: BatchClient) -> None:
    pool = create(client, "born-auto", enable_auto_scale=True, auto_scale_evaluation_interval=FIVE_MINUTES,
                  auto_scale_formula="$TargetDedicatedNodes = 2; $TargetLowPriorityNodes = 1;")
    assert pool.enable_auto_scale is True and pool.auto_scale_evaluation_interval == FIVE_MINUTES
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 1)
    run = pool.auto_scale_run
    assert run is not None and run.error is None and run.timestamp is not None
    assert run.results == "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=1;$NodeDeallocationOption=requeue"
    pool = steady(client, "born-auto", 2)
    assert pool.current_low_priority_nodes == 1
    status, code, values = refusal(client.create_pool, bm.BatchPoolCreateOptions(
        id="mixed", vm_size="a1", virtual_machine_configuration=VM, enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = 1;", target_dedicated_nodes=3))
    assert (status, code, values) == (400, "InvalidAutoScalingSettings", {"PropertyName": "targetDedicatedNodes"})
    status, code, values = refusal(client.create_pool, bm.BatchPoolCreateOptions(
        id="bad-formula", vm_size="a1", virtual_machine_configuration=VM, enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = max(1,;"))
    assert (status, code) == (400, "AutoScalingFormulaSyntaxError")
    assert values == {"Message": "Line 1, Col 31: Expected a value but found ';'."}


def test_evaluate_answers_in_azures_shapes(client: BatchClient) -> None:
    create(client, "eval-pool")
    status, code, _ = refusal(client.evaluate_pool_auto_scale, "eval-pool",
                              bm.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes=1;"))
    assert (status, code) == (409, "AutoScaleNotEnabled")
    client.enable_pool_auto_scale("eval-pool", bm.BatchPoolEnableAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = 0;"))
    etag = client.get_pool("eval-pool").etag
    run = client.evaluate_pool_auto_scale("eval-pool", bm.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes=3"))
    assert run.results == "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    assert run.error is None and run.timestamp is not None
    run = client.evaluate_pool_auto_scale("eval-pool", bm.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="""
        $curTime = time();
        $isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
        span = TimeInterval_Minute * 3;
        $TargetDedicatedNodes = $isWeekday ? 2 : 1;"""))
    assert run.results is not None and run.error is None
    parts = run.results.split(";")
    assert parts[1:3] == ["$TargetLowPriorityNodes=0", "$NodeDeallocationOption=requeue"]
    assert [p.split("=")[0] for p in parts[3:]] == ["$curTime", "$isWeekday", "$span"]
    assert parts[-1] == "$span=00:03:00" and parts[3].endswith("Z")
    run = client.evaluate_pool_auto_scale("eval-pool", bm.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = avg($CPUPercent.GetSample(TimeInterval_Minute * 10, 80));"))
    assert run.error is not None and run.error.code == "InsufficientSampleData"
    assert run.error.message == "Autoscale evaluation failed due to insufficient sample data"
    assert run.error.error_values is not None and [(v.name, v.value) for v in run.error.error_values] == [
        ("Message", "Line 1, Col 50: Insufficient data from data set: $CPUPercent wanted 80%, received 5%")]
    run = client.evaluate_pool_auto_scale("eval-pool", bm.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="a = 1 +;\nb = nope();\n$TargetDedicatedNodes = 1"))
    assert run.error is not None and run.error.code == "AutoScalingFormulaSyntaxError"
    assert run.error.error_values is not None and [v.value for v in run.error.error_values] == [
        "Line 1, Col 8: Expected a value but found ';'.", "Line 2, Col 9: Unknown function 'nope'."]
    assert client.get_pool("eval-pool").etag == etag  # evaluating changes nothing


def test_enable_disable_and_the_refusals(client: BatchClient) -> None:
    create(client, "switch-pool")
    client.enable_pool_auto_scale("switch-pool", bm.BatchPoolEnableAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = 1; $NodeDeallocationOption = terminate;",
        auto_scale_evaluation_interval=timedelta(minutes=10)))
    pool = client.get_pool("switch-pool")
    assert pool.enable_auto_scale is True and pool.target_dedicated_nodes == 1
    assert pool.auto_scale_run is not None and pool.auto_scale_run.results == (
        "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=terminate")
    steady(client, "switch-pool", 1)
    status, code, _ = refusal(client.begin_resize_pool, "switch-pool",
                              bm.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=0)
    assert (status, code) == (409, "AutoScaleEnabled")
    status, code, values = refusal(client.enable_pool_auto_scale, "switch-pool", bm.BatchPoolEnableAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = $CPUPercent.Median();"))
    assert (status, code, values) == (400, "AutoScalingFormulaSyntaxError",
                                      {"Message": "Line 1, Col 43: Unknown method 'Median'."})
    status, code, values = refusal(client.enable_pool_auto_scale, "switch-pool", bm.BatchPoolEnableAutoScaleOptions(
        auto_scale_formula="x=1;" * 2049))
    assert (status, code, values["PropertyName"]) == (400, "AutoScaleFormulaTooLong", "autoScaleFormula")
    status, code, values = refusal(client.enable_pool_auto_scale, "switch-pool", bm.BatchPoolEnableAutoScaleOptions(
        auto_scale_evaluation_interval=timedelta(minutes=4)))
    assert (status, code, values["PropertyName"]) == (400, "InvalidPropertyValue", "autoScaleEvaluationInterval")
    assert (client.get_pool("switch-pool").auto_scale_formula or "").startswith("$TargetDedicatedNodes = 1;")  # kept
    client.disable_pool_auto_scale("switch-pool")
    pool = client.get_pool("switch-pool")
    assert pool.enable_auto_scale is False and pool.target_dedicated_nodes == 1  # the last run's target stays
    assert pool.auto_scale_formula is None and pool.auto_scale_run is None
    client.begin_resize_pool("switch-pool", bm.BatchPoolResizeOptions(target_dedicated_nodes=0),
                             polling_interval=0).result()
    steady(client, "switch-pool", 0)


def test_the_periodic_evaluation_follows_the_tasks(client: BatchClient, server: LiveServer) -> None:
    pool = create(client, "follow", enable_auto_scale=True, auto_scale_formula=PENDING,
                  auto_scale_evaluation_interval=FIVE_MINUTES)
    assert pool.target_dedicated_nodes == 0 and pool.auto_scale_run is not None
    assert "$pendingTaskSamplePercent=16.666666666666668" in (pool.auto_scale_run.results or "")
    client.create_job(bm.BatchJobCreateOptions(id="follow-job", pool_info=bm.BatchPoolInfo(pool_id="follow")))
    client.create_tasks("follow-job", [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true")
                                       for i in range(3)])
    before = pool.auto_scale_run.timestamp
    server.advance_clock(300)  # ten samples of three pending tasks, then the evaluation
    run = next_run(client, "follow", before)
    assert run.error is None and run.results is not None
    assert run.results.startswith("$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;"
                                  "$NodeDeallocationOption=taskcompletion;")
    assert "$pendingTaskSamplePercent=100;$pendingTaskSamples=3;" in run.results
    steady(client, "follow", 2)
    wait_for(lambda: all(t.state == bm.BatchTaskState.COMPLETED for t in client.list_tasks("follow-job")),
             "the tasks to run on the nodes the formula asked for")
    server.advance_clock(300)  # nothing pending any more: the pool shrinks to nothing
    run = next_run(client, "follow", run.timestamp)
    assert run.results is not None and run.results.startswith("$TargetDedicatedNodes=0;")
    steady(client, "follow", 0)


def test_the_schedule_survives_a_restart(client: BatchClient, server: LiveServer) -> None:
    pool = create(client, "durable", enable_auto_scale=True, auto_scale_evaluation_interval=FIVE_MINUTES,
                  auto_scale_formula="$TargetLowPriorityNodes = $TargetLowPriorityNodes < 2 ? "
                                     "$TargetLowPriorityNodes + 1 : 0;")
    assert pool.target_low_priority_nodes == 1 and pool.auto_scale_run is not None
    server.kill()
    server.start()
    pool = client.get_pool("durable")
    assert pool.enable_auto_scale is True and pool.target_low_priority_nodes == 1
    server.advance_clock(300)
    run = next_run(client, "durable", pool.auto_scale_run.timestamp if pool.auto_scale_run else None)
    assert run.results is not None and run.results.startswith("$TargetDedicatedNodes=0;$TargetLowPriorityNodes=2;")


# --- azure-batch 14.2 ----------------------------------------------------------------------------------

V14 = """
import json, os, datetime
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as bm

client = BatchServiceClient(SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                            batch_url=os.environ["OB_BATCH_URL"])

def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except bm.BatchErrorException as exc:
        return [exc.response.status_code, exc.error.code, {v.key: v.value for v in (exc.error.values or [])}]
    return None

def run_of(run):
    error = run.error and [run.error.code, run.error.message, [[v.name, v.value] for v in run.error.values or []]]
    return {"results": run.results, "error": error, "stamped": run.timestamp is not None}

VM = bm.VirtualMachineConfiguration(
    image_reference=bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
"""


def v14(server: LiveServer, script: str) -> Any:
    env = {"OB_ACCOUNT": server.account, "OB_KEY": server.key, "OB_BATCH_URL": server.batch_url}
    return run_script("batch14", V14 + script, env=env)


def test_autoscale_through_azure_batch_14(server: LiveServer, client: BatchClient) -> None:
    out = v14(server, """
client.pool.add(bm.PoolAddParameter(id="v14-auto", vm_size="standard_d2s_v3", virtual_machine_configuration=VM,
    enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes = $PendingTasks > 0 ? 1 : 0;",
    auto_scale_evaluation_interval=datetime.timedelta(minutes=5)))
created = client.pool.get("v14-auto")
client.pool.add(bm.PoolAddParameter(id="v14-fixed", vm_size="standard_d2s_v3", virtual_machine_configuration=VM))
not_enabled = error_of(client.pool.evaluate_auto_scale, "v14-fixed", "$TargetDedicatedNodes=1")
client.pool.enable_auto_scale("v14-fixed", auto_scale_formula="$TargetLowPriorityNodes=1",
                              auto_scale_evaluation_interval=datetime.timedelta(minutes=6))
enabled = client.pool.get("v14-fixed")
evaluated = client.pool.evaluate_auto_scale("v14-fixed", "$TargetDedicatedNodes=3")
failed = client.pool.evaluate_auto_scale("v14-fixed", "$TargetDedicatedNodes = $ActiveTasks.GetSample(TimeInterval_Hour, 90);")
syntax = error_of(client.pool.enable_auto_scale, "v14-fixed", auto_scale_formula="$TargetDedicatedNodes = (2")
resize = error_of(client.pool.resize, "v14-fixed", bm.PoolResizeParameter(target_dedicated_nodes=1))
client.pool.disable_auto_scale("v14-fixed")
disabled = client.pool.get("v14-fixed")
client.job.add(bm.JobAddParameter(id="v14-job", pool_info=bm.PoolInformation(pool_id="v14-auto")))
client.task.add("v14-job", bm.TaskAddParameter(id="t1", command_line="/bin/true"))
print(json.dumps({
    "created": [created.enable_auto_scale, created.target_dedicated_nodes, run_of(created.auto_scale_run),
                created.auto_scale_evaluation_interval.total_seconds()],
    "not_enabled": not_enabled,
    "enabled": [enabled.target_low_priority_nodes, run_of(enabled.auto_scale_run)],
    "evaluated": run_of(evaluated), "failed": run_of(failed), "syntax": syntax, "resize": resize,
    "disabled": [disabled.enable_auto_scale, disabled.auto_scale_formula, disabled.target_low_priority_nodes],
}))
""")
    assert out["created"] == [True, 0, {"results": "$TargetDedicatedNodes=0;$TargetLowPriorityNodes=0;"
                                                   "$NodeDeallocationOption=requeue", "error": None, "stamped": True},
                              300.0]
    assert out["not_enabled"][:2] == [409, "AutoScaleNotEnabled"]
    assert out["enabled"] == [1, {"results": "$TargetDedicatedNodes=0;$TargetLowPriorityNodes=1;"
                                             "$NodeDeallocationOption=requeue", "error": None, "stamped": True}]
    assert out["evaluated"]["results"] == ("$TargetDedicatedNodes=3;$TargetLowPriorityNodes=1;"
                                           "$NodeDeallocationOption=requeue")
    assert out["failed"]["error"] == ["InsufficientSampleData",
                                      "Autoscale evaluation failed due to insufficient sample data",
                                      [["Message", "Line 1, Col 47: Insufficient data from data set: $ActiveTasks "
                                                   "wanted 90%, received 0%"]]]
    assert out["syntax"] == [400, "AutoScalingFormulaSyntaxError",
                             {"Message": "Line 1, Col 27: Expected ')' but found the end of the formula."}]
    assert out["resize"][:2] == [409, "AutoScaleEnabled"]
    assert out["disabled"] == [False, None, 1]
    server.advance_clock(300)  # the periodic evaluation sees the pending task
    wait_for(lambda: client.get_pool("v14-auto").target_dedicated_nodes == 1, "the 14.2 pool to grow")
    out = v14(server, """
pool = client.pool.get("v14-auto")
print(json.dumps([pool.target_dedicated_nodes, run_of(pool.auto_scale_run)]))
""")
    assert out == [1, {"results": "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue",
                       "error": None, "stamped": True}]
