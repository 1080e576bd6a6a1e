"""Spot/low-priority preemption, driven by azure-batch 15.x against a live server: ``openbatch node
preempt`` (POST /openbatch/pools/{pool}/nodes/{node}/preempt) turns a Spot node ``preempted``, the
task running there is requeued (requeueCount 1, retryCount untouched) and completes on the dedicated
node, the node keeps counting in the pool and is restored (idle again) when its restore time is up;
dedicated nodes cannot be preempted."""

from __future__ import annotations

from azure.batch import BatchClient
from azure.batch import models as m

from tests.cli.helpers import cli, ok
from tests.helpers.batchraw import raw
from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

TEST_CLOCK = True  # the module's server runs on the test clock (autoscale samples on demand)
# Runs at once on a dedicated node, for a minute on a Spot one.
SPOT_SLEEPS = "/bin/sh -c 'test \"$AZ_BATCH_NODE_IS_DEDICATED\" = true || sleep 60'"


def _nodes(client: BatchClient, pool_id: str) -> dict[bool, m.BatchNode]:
    return {bool(n.is_dedicated): n for n in client.list_nodes(pool_id)}


def test_preempted_spot_node_requeues_its_task_which_completes_elsewhere(client: BatchClient,
                                                                        server: LiveServer) -> None:
    client.create_pool(m.BatchPoolCreateOptions(
        id="spot", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE, target_dedicated_nodes=1,
        target_low_priority_nodes=1, metadata=[m.BatchMetadataItem(name="openbatch.spotRestoreSeconds", value="2")]))
    wait_for(lambda: len(n := _nodes(client, "spot")) == 2 and all(x.state == "idle" for x in n.values()),
             "both nodes idle")
    nodes = _nodes(client, "spot")
    spot, dedicated = nodes[False].id, nodes[True].id
    assert spot and dedicated
    client.create_job(m.BatchJobCreateOptions(id="spotjob", pool_info=m.BatchPoolInfo(pool_id="spot")))
    client.create_tasks("spotjob", [m.BatchTaskCreateOptions(id=f"t{i}", command_line=SPOT_SLEEPS) for i in (1, 2)])

    def on_spot() -> str | None:
        for task in client.list_tasks("spotjob"):
            if task.state == "running" and task.node_info and task.node_info.node_id == spot:
                return task.id
        return None

    victim = wait_for(on_spot, "a task running on the Spot node")
    wait_for(lambda: client.get_node("spot", dedicated).state == "idle", "the dedicated node to be free")

    refused = cli(server, "node", "preempt", "spot", dedicated)
    assert refused.exit_code != 0 and "dedicated" in refused.output
    ok(server, "node", "preempt", "spot", spot)
    assert client.get_node("spot", spot).state == "preempted"
    counts = {c.pool_id: c for c in client.list_pool_node_counts()}["spot"]
    assert counts.low_priority is not None and counts.low_priority.preempted == 1
    assert client.get_pool("spot").current_low_priority_nodes == 1  # a preempted node still counts

    task = wait_for(lambda: (t := client.get_task("spotjob", victim)).state == "completed" and t,
                    "the preempted task to complete elsewhere", timeout=30)
    info = task.execution_info
    assert info is not None and info.exit_code == 0 and info.result == "success"
    assert info.requeue_count == 1 and info.retry_count == 0
    assert task.node_info is not None and task.node_info.node_id == dedicated

    wait_for(lambda: client.get_node("spot", spot).state == "idle", "the Spot node to be restored", timeout=30)
    status, body, _ = raw(client, "POST", "/openbatch/pools/spot/nodes/nosuchnode/preempt")
    assert status == 404 and body["code"] == "NodeNotFound", body


def test_random_preemption_rate_of_a_pool(client: BatchClient) -> None:
    """``openbatch.preemptionsPerHour`` preempts the pool's Spot nodes at random (here: at the first
    draw); with a negative restore time they stay preempted, and a dedicated node is never touched."""
    client.create_pool(m.BatchPoolCreateOptions(
        id="chaos", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE, target_dedicated_nodes=1,
        target_low_priority_nodes=1,
        metadata=[m.BatchMetadataItem(name="openbatch.preemptionsPerHour", value="1000000"),
                  m.BatchMetadataItem(name="openbatch.spotRestoreSeconds", value="-1")]))
    wait_for(lambda: _nodes(client, "chaos").get(False, None) is not None
             and _nodes(client, "chaos")[False].state == "preempted", "the Spot node to be preempted", timeout=30)
    assert _nodes(client, "chaos")[True].state == "idle"


def test_preempted_node_count_in_autoscale_formulas(client: BatchClient, server: LiveServer) -> None:
    """$PreemptedNodeCount samples count the pool's Spot nodes in state preempted."""
    client.create_pool(m.BatchPoolCreateOptions(
        id="scaled", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE, enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = 0; $TargetLowPriorityNodes = 2;",
        metadata=[m.BatchMetadataItem(name="openbatch.spotRestoreSeconds", value="-1")]))
    wait_for(lambda: len(n := list(client.list_nodes("scaled"))) == 2 and all(x.state == "idle" for x in n),
             "two Spot nodes idle")
    victim = next(iter(client.list_nodes("scaled"))).id
    assert victim is not None
    ok(server, "node", "preempt", "scaled", victim)
    server.advance_clock(60)  # two samples taken after the preemption
    run = client.evaluate_pool_auto_scale("scaled", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$TargetLowPriorityNodes = 2; $gone = max($PreemptedNodeCount.GetSample(1));"))
    assert run.error is None and run.results is not None and "$gone=1" in run.results, run.results
