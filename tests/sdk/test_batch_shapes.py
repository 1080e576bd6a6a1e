"""Azure's exact shapes and behaviours that real clients run into: deletions pass through
``deleting``; a node's body carries only the spec's properties; entity URLs follow the host the
request named; container tasks on a pool without containers fail as on Azure; custom images this
server does not have are refused; old api-versions' account statistics routes answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.helpers.batchraw import error_values, raw
from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_legacy_pools import LEGACY_PRELUDE, env

VM = {"imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
      "nodeAgentSKUId": "batch.node.ubuntu 22.04"}
# ComputeNode's properties in the 2024-07-01.20.0 spec.
NODE_PROPERTIES = {
    "id", "url", "state", "schedulingState", "stateTransitionTime", "lastBootTime", "allocationTime", "ipAddress",
    "affinityId", "vmSize", "totalTasksRun", "runningTasksCount", "runningTaskSlotsCount", "totalTasksSucceeded",
    "recentTasks", "startTask", "startTaskInfo", "certificateReferences", "errors", "isDedicated",
    "endpointConfiguration", "nodeAgentInfo", "virtualMachineInfo",
}


def _pool(client: BatchClient, pool_id: str, nodes: int = 0) -> None:
    body = {"id": pool_id, "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": VM,
            "targetDedicatedNodes": nodes}
    status, doc, _ = raw(client, "POST", "/pools", json.dumps(body).encode())
    assert status == 201, doc


@pytest.fixture(scope="module")
def localhost(server: LiveServer) -> Iterator[BatchClient]:
    """The same server reached through another name of this host."""
    c = BatchClient(f"http://localhost:{server.batch_port}", AzureNamedKeyCredential(server.account, server.key))
    yield c
    c.close()


def test_a_deleted_pool_is_deleting_until_it_is_gone(client: BatchClient) -> None:
    _pool(client, "passing")
    assert raw(client, "DELETE", "/pools/passing")[0] == 202
    status, doc, _ = raw(client, "GET", "/pools/passing")
    assert (status, doc.get("state")) == (200, "deleting")
    status, doc, _ = raw(client, "POST", "/pools", json.dumps({"id": "passing", "vmSize": "small",
                                                               "virtualMachineConfiguration": VM}).encode())
    assert (status, doc["code"]) == (409, "PoolBeingDeleted")
    wait_for(lambda: raw(client, "GET", "/pools/passing")[0] == 404, "the pool to go", 30)


def test_a_deleted_job_is_deleting_until_it_is_gone(client: BatchClient) -> None:
    _pool(client, "jobhome")
    client.create_job(m.BatchJobCreateOptions(id="passing", pool_info=m.BatchPoolInfo(pool_id="jobhome")))
    assert raw(client, "DELETE", "/jobs/passing")[0] == 202
    status, doc, _ = raw(client, "GET", "/jobs/passing")
    assert (status, doc.get("state")) == (200, "deleting")
    assert [j.state for j in client.list_jobs(filter="id eq 'passing'")] == ["deleting"]
    with pytest.raises(HttpResponseError) as refused:
        client.create_job(m.BatchJobCreateOptions(id="passing", pool_info=m.BatchPoolInfo(pool_id="jobhome")))
    assert refused.value.status_code == 409 and refused.value.error is not None
    assert refused.value.error.code == "JobBeingDeleted"
    wait_for(lambda: raw(client, "GET", "/jobs/passing")[0] == 404, "the job to go", 30)


def test_node_bodies_carry_only_spec_properties(client: BatchClient) -> None:
    _pool(client, "nodebody", nodes=1)
    node = wait_for(lambda: [n for n in client.list_nodes("nodebody") if n.state == "idle"], "the node", 30)[0]
    _, one, _ = raw(client, "GET", f"/pools/nodebody/nodes/{node.id}")
    _, listed, _ = raw(client, "GET", "/pools/nodebody/nodes")
    for body in (one, listed["value"][0]):
        keys = set(body) - {"odata.metadata"}
        assert keys <= NODE_PROPERTIES, keys - NODE_PROPERTIES
        assert {"id", "url", "state", "vmSize", "isDedicated"} <= keys


def test_entity_urls_follow_the_host_the_request_named(client: BatchClient, localhost: BatchClient,
                                                       server: LiveServer) -> None:
    here = f"http://localhost:{server.batch_port}"
    status, _, headers = raw(localhost, "POST", "/pools", json.dumps({
        "id": "named", "vmSize": "small", "virtualMachineConfiguration": VM, "targetDedicatedNodes": 1}).encode())
    assert status == 201 and headers["location"] == f"{here}/pools/named"
    node = wait_for(lambda: [n for n in localhost.list_nodes("named") if n.state == "idle"], "the node", 30)[0]
    assert node.url == f"{here}/pools/named/nodes/{node.id}"
    _, body, _ = raw(localhost, "GET", "/pools/named")
    assert body["odata.metadata"] == f"{here}/$metadata#pools/@Element" and body["url"] == f"{here}/pools/named"
    status, _, headers = raw(localhost, "POST", "/jobs", json.dumps({"id": "named", "poolInfo": {"poolId": "named"}
                                                                     }).encode())
    assert status == 201 and headers["location"] == f"{here}/jobs/named"
    localhost.create_task("named", m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    task = wait_for(lambda: (t := localhost.get_task("named", "t")).state == "completed" and t, "the task", 30)
    assert task.node_info is not None and task.node_info.node_url == node.url
    _, body, _ = raw(client, "GET", "/pools/named")
    assert body["odata.metadata"].startswith(f"http://127.0.0.1:{server.batch_port}/$metadata#")


def test_container_tasks_fail_on_a_pool_without_containers(client: BatchClient) -> None:
    """Azure takes the task and fails it when it is to run: ContainerPoolNotSupported (it never runs
    on the host instead)."""
    _pool(client, "nocontainers", nodes=1)
    client.create_job(m.BatchJobCreateOptions(id="containers", pool_info=m.BatchPoolInfo(pool_id="nocontainers")))
    settings = m.BatchTaskContainerSettings(image_name="ubuntu:22.04")
    client.create_task("containers", m.BatchTaskCreateOptions(
        id="boxed", command_line="/bin/sh -c 'touch $AZ_BATCH_NODE_SHARED_DIR/ran'", container_settings=settings))
    client.create_task("containers", m.BatchTaskCreateOptions(id="plain", command_line="/bin/true"))
    done = wait_for(lambda: all(t.state == "completed" for t in client.list_tasks("containers")) and
                    {t.id: t for t in client.list_tasks("containers")}, "both tasks", 30)
    info = done["boxed"].execution_info
    assert info is not None and info.result == "failure" and info.exit_code is None
    assert info.failure_info is not None and info.failure_info.code == "ContainerPoolNotSupported"
    assert info.failure_info.category == "usererror"
    assert done["plain"].execution_info is not None and done["plain"].execution_info.result == "success"
    node_id = done["plain"].node_info.node_id if done["plain"].node_info else ""
    with pytest.raises(HttpResponseError):
        client.get_node_file_properties("nocontainers", node_id, "shared/ran")


@pytest.mark.parametrize("key", ["virtualMachineImageId", "sharedGalleryImageId", "communityGalleryImageId"])
def test_an_image_this_server_does_not_offer_is_refused(client: BatchClient, key: str) -> None:
    vm: dict[str, Any] = {"imageReference": {key: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
                                                  "galleries/x/images/mine/versions/1.0.0"},
                          "nodeAgentSKUId": "batch.node.ubuntu 22.04"}
    status, body, _ = raw(client, "POST", "/pools", json.dumps({"id": "custom", "vmSize": "small",
                                                                "virtualMachineConfiguration": vm}).encode())
    assert (status, body["code"]) == (400, "InvalidPropertyValue")
    assert error_values(body)["PropertyName"] == f"virtualMachineConfiguration.imageReference.{key}"
    assert raw(client, "GET", "/pools/custom")[0] == 404


def test_lifetime_statistics_of_old_api_versions(server: LiveServer) -> None:
    """azure-batch 1.0.0's account-wide statistics: served (every measure zero), never ResourceNotFound."""
    out = run_script("legacy", LEGACY_PRELUDE + """
jobs = client.job.get_all_jobs_lifetime_statistics()
pools = client.pool.get_all_pools_lifetime_statistics()
dump({"jobs": [jobs.num_succeeded_tasks, jobs.wall_clock_time.total_seconds(), jobs.url],
      "pools": [pools.usage_stats.dedicated_core_time.total_seconds(), pools.url]})
""", env(server))
    assert out["jobs"] == [0, 0.0, f"{server.batch_url}/lifetimejobstats"]
    assert out["pools"] == [0.0, f"{server.batch_url}/lifetimepoolstats"]
