"""Pools and compute nodes through azure-batch 15.x (``BatchClient``) against a live server.

The pool API is tested on its own first (CRUD, validation, errors, filters, paging, conditions);
the node tests at the end need the engine to create nodes for a pool's targets.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchNodeRebootOptions, BatchNodeReimageOptions  # not exported by 15.1
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest, HttpResponse

from openbatch.node import accounts
from tests.helpers import batchraw
from tests.helpers.waiting import wait_for

API = "2025-06-01"
JAMMY = bm.BatchVmImageReference(publisher="Canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts")


def vm(image: bm.BatchVmImageReference = JAMMY, sku: str = "batch.node.ubuntu 22.04") -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id=sku)


def pool_options(pool_id: str, **kw: Any) -> bm.BatchPoolCreateOptions:
    kw.setdefault("vm_size", "STANDARD_D2S_V3")
    kw.setdefault("virtual_machine_configuration", vm())
    return bm.BatchPoolCreateOptions(id=pool_id, **kw)


def failure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str | None, dict[str, str]]:
    """(status, Batch error code, error values) of a call that must fail."""
    try:
        fn(*args, **kwargs)
    except HttpResponseError as exc:
        values: dict[str, str] = {}
        code = None
        response = exc.response
        if isinstance(response, HttpResponse) and response.status_code != 304 and response.text():
            body = response.json()
            code = body.get("code")
            values = {v["key"]: v["value"] for v in body.get("values", [])}
        return exc.status_code or 0, code, values
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not fail")


def raw(client: BatchClient, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """A request the SDK would not send (malformed bodies, old shapes): (status, JSON body)."""
    status, doc, _ = batchraw.raw(client, method, path, body, headers, API)
    return status, doc


# --- pool CRUD -------------------------------------------------------------------------------


def test_create_get_list_exists(client: BatchClient) -> None:
    client.create_pool(pool_options(
        "Crud-Pool", display_name="crud", task_slots_per_node=4,
        task_scheduling_policy=bm.BatchTaskSchedulingPolicy(node_fill_type="pack"),
        metadata=[bm.BatchMetadataItem(name="team", value="a")],
        start_task=bm.BatchStartTask(command_line="/bin/sh -c 'echo hi'", wait_for_success=True),
    ))
    pool = client.get_pool("crud-pool")  # ids are case-insensitive, case preserved
    assert pool.id == "Crud-Pool"
    assert pool.vm_size == "standard_d2s_v3"
    assert pool.state == bm.BatchPoolState.ACTIVE
    assert pool.allocation_state == bm.AllocationState.STEADY
    assert pool.task_slots_per_node == 4
    assert pool.task_scheduling_policy and pool.task_scheduling_policy.node_fill_type == "pack"
    assert pool.metadata and pool.metadata[0].name == "team"
    assert pool.start_task and pool.start_task.command_line == "/bin/sh -c 'echo hi'"
    assert pool.virtual_machine_configuration
    assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert pool.target_dedicated_nodes == 0 and pool.current_dedicated_nodes == 0
    assert pool.resize_timeout is not None and pool.enable_auto_scale is False
    assert pool.url.endswith("/pools/Crud-Pool")
    assert pool.etag and pool.last_modified and pool.creation_time and pool.state_transition_time
    assert "Crud-Pool" in [p.id for p in client.list_pools()]
    assert client.pool_exists("CRUD-POOL") is True
    with pytest.raises(ResourceNotFoundError):  # 15.1's pool_exists raises on the service's 404
        client.pool_exists("no-such-pool")


def test_create_answers_201_with_entity_headers(client: BatchClient) -> None:
    body = b'{"id": "hdr-pool", "vmSize": "standard_a1", "virtualMachineConfiguration": {"imageReference": ' \
           b'{"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"}, ' \
           b'"nodeAgentSKUId": "batch.node.ubuntu 22.04"}, "unknownProperty": 1}'
    request = HttpRequest("POST", f"/pools?api-version={API}", content=body,
                          headers={"Content-Type": "application/json; odata=minimalmetadata"})
    response = client.send_request(request)
    assert response.status_code == 201
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    assert response.headers["Location"].endswith("/pools/hdr-pool")
    assert response.headers["DataServiceId"].endswith("/pools/hdr-pool")
    assert response.headers["request-id"]


def test_duplicate_pool_is_refused_case_insensitively(client: BatchClient) -> None:
    client.create_pool(pool_options("dup-pool"))
    status, code, _ = failure(client.create_pool, pool_options("DUP-POOL"))
    assert (status, code) == (409, "PoolExists")


@pytest.mark.parametrize("bad_id", ["has space", "a" * 65, "dot.ted", "slash/y"])
def test_bad_pool_id(client: BatchClient, bad_id: str) -> None:
    status, code, values = failure(client.create_pool, pool_options(bad_id))
    assert (status, code) == (400, "InvalidPropertyValue")
    assert values["PropertyName"] == "id"


def test_validation_errors(client: BatchClient) -> None:
    status, code, values = failure(client.create_pool, bm.BatchPoolCreateOptions(
        {"id": "no-size", "virtualMachineConfiguration": vm().as_dict()}))
    assert (status, code, values.get("PropertyName")) == (400, "MissingRequiredProperty", "vmSize")
    status, code, values = failure(client.create_pool, bm.BatchPoolCreateOptions({"id": "no-vm", "vmSize": "a1"}))
    assert (code, values.get("PropertyName")) == ("MissingRequiredProperty", "virtualMachineConfiguration")
    cases = {
        "taskSlotsPerNode": pool_options("slots", task_slots_per_node=0),
        "virtualMachineConfiguration.nodeAgentSKUId": pool_options("win", virtual_machine_configuration=vm(
            bm.BatchVmImageReference(publisher="MicrosoftWindowsServer", offer="WindowsServer", sku="2022-datacenter"),
            "batch.node.windows amd64")),
        "virtualMachineConfiguration.imageReference.sku": pool_options("mismatch", virtual_machine_configuration=vm(
            JAMMY, "batch.node.debian 12")),
        "resizeTimeout": pool_options("timeout", resize_timeout="PT1M"),
    }
    for prop, options in cases.items():
        status, code, values = failure(client.create_pool, options)
        assert (status, code, values.get("PropertyName")) == (400, "InvalidPropertyValue", prop), prop
    status, code, values = failure(client.create_pool, pool_options("slots2", task_slots_per_node=257))
    assert (code, values.get("PropertyName")) == ("InvalidPropertyValue", "taskSlotsPerNode")
    status, code, values = failure(client.create_pool, pool_options("auto", enable_auto_scale=True))
    assert (code, values.get("PropertyName")) == ("MissingRequiredProperty", "autoScaleFormula")
    assert not [p for p in client.list_pools() if p.id in ("slots", "win", "mismatch", "timeout", "auto")]


def test_malformed_and_legacy_bodies(client: BatchClient) -> None:
    status, body = raw(client, "POST", "/pools", b'{"id": "x", ')
    assert (status, body["code"]) == (400, "InvalidRequestBody")
    status, body = raw(client, "POST", "/pools", b'{"id": "x", "vmSize": 5}')
    assert (status, body["code"]) == (400, "InvalidRequestBody")
    status, body = raw(client, "POST", "/pools", b'{"id": "cs", "vmSize": "small", '
                                                   b'"cloudServiceConfiguration": {"osFamily": "6"}}')
    assert (status, body["code"]) == (400, "InvalidPropertyValue")
    assert {"key": "PropertyName", "value": "cloudServiceConfiguration"} in body["values"]
    assert "RequestId:" in body["message"]["value"] and body["message"]["lang"] == "en-US"


def test_unknown_pool(client: BatchClient) -> None:
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (client.get_pool, ("ghost",)),
        (client.update_pool, ("ghost", bm.BatchPoolUpdateOptions(metadata=[]))),
        (client.replace_pool_properties, ("ghost", bm.BatchPoolReplaceOptions(
            application_package_references=[], metadata=[]))),
        (client.disable_pool_auto_scale, ("ghost",)),
        (lambda: list(client.list_nodes("ghost")), ()),
    ]
    for fn, args in calls:
        assert failure(fn, *args)[:2] == (404, "PoolNotFound")
    status, body = raw(client, "DELETE", "/pools/ghost")
    assert (status, body["code"]) == (404, "PoolNotFound")
    status, body = raw(client, "POST", "/pools/ghost/resize", b'{"targetDedicatedNodes": 1}')
    assert (status, body["code"]) == (404, "PoolNotFound")


def test_patch_and_replace_properties(client: BatchClient) -> None:
    client.create_pool(pool_options(
        "upd-pool", metadata=[bm.BatchMetadataItem(name="a", value="1")],
        start_task=bm.BatchStartTask(command_line="/bin/true")))
    before = client.get_pool("upd-pool")
    client.update_pool("upd-pool", bm.BatchPoolUpdateOptions(
        start_task=bm.BatchStartTask(command_line="/bin/echo patched")))
    patched = client.get_pool("upd-pool")
    assert patched.start_task and patched.start_task.command_line == "/bin/echo patched"
    assert patched.metadata and patched.metadata[0].value == "1"  # absent from the patch: kept
    assert patched.etag != before.etag and patched.last_modified >= before.last_modified
    client.replace_pool_properties("upd-pool", bm.BatchPoolReplaceOptions(
        application_package_references=[],
        metadata=[bm.BatchMetadataItem(name="b", value="2")]))
    replaced = client.get_pool("upd-pool")
    assert replaced.start_task is None  # absent from an update: removed
    assert [(i.name, i.value) for i in replaced.metadata or []] == [("b", "2")]
    status, body = raw(client, "POST", "/pools/upd-pool/updateproperties", b'{"metadata": []}')
    assert (status, body["code"]) == (400, "MissingRequiredProperty")


def test_conditional_requests(client: BatchClient) -> None:
    client.create_pool(pool_options("cond-pool"))
    etag = client.get_pool("cond-pool").etag
    status, code, _ = failure(client.update_pool, "cond-pool", bm.BatchPoolUpdateOptions(metadata=[]),
                              etag="0x8D0000000000000", match_condition=MatchConditions.IfNotModified)
    assert (status, code) == (412, "ConditionNotMet")
    client.update_pool("cond-pool", bm.BatchPoolUpdateOptions(metadata=[]), etag=etag,
                       match_condition=MatchConditions.IfNotModified)
    new_etag = client.get_pool("cond-pool").etag
    assert new_etag != etag
    status, _, _ = failure(client.get_pool, "cond-pool", etag=new_etag, match_condition=MatchConditions.IfModified)
    assert status == 304
    assert client.get_pool("cond-pool", etag=etag, match_condition=MatchConditions.IfModified).etag == new_etag


def test_list_filter_select_and_paging(client: BatchClient) -> None:
    for i in range(5):
        client.create_pool(pool_options(f"page-{i}", display_name=f"page {i}"))
    ids = [p.id for p in client.list_pools(filter="startswith(id, 'page-')", max_results=2)]
    assert ids == [f"page-{i}" for i in range(5)]
    assert [p.id for p in client.list_pools(filter="id eq 'page-3'")] == ["page-3"]
    assert [p.id for p in client.list_pools(filter="startswith(id,'page-') and state eq 'deleting'")] == []
    selected = list(client.list_pools(filter="id eq 'page-1'", select=["id", "state"]))
    assert selected[0].id == "page-1" and selected[0].state == "active" and selected[0].vm_size is None
    status, body = raw(client, "GET", "/pools?maxresults=2&$filter=" + "startswith(id,'page-')")
    assert status == 200 and len(body["value"]) == 2 and "odata.nextLink" in body
    status, body = raw(client, "GET", "/pools?$filter=id%20eq")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")
    status, body = raw(client, "GET", "/pools?maxresults=1001")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")
    assert client.get_pool("page-0", expand=["stats"]).id == "page-0"  # 15.x's model has no stats any more
    status, body = raw(client, "GET", "/pools/page-0?$expand=stats")
    assert status == 200 and body["stats"]["usageStats"]["dedicatedCoreTime"] == "PT0S"


def test_delete_pool_poller_finishes(client: BatchClient) -> None:
    client.create_pool(pool_options("del-pool"))
    poller = client.begin_delete_pool("del-pool", polling_interval=0)
    poller.result(timeout=60)
    assert poller.done()
    assert failure(client.get_pool, "del-pool")[:2] == (404, "PoolNotFound")
    client.create_pool(pool_options("del-pool"))  # the id is free again
    assert client.get_pool("del-pool").state == "active"


def test_usage_metrics_and_unsupported_pool_actions(client: BatchClient) -> None:
    assert list(client.list_pool_usage_metrics()) == []
    client.create_pool(pool_options("misc-pool"))
    status, body = raw(client, "POST", "/pools/misc-pool/upgradeos", b'{"targetOSVersion": "x"}')
    assert (status, body["code"]) == (409, "OperationInvalidForCurrentState")


# --- nodes (need the engine) -------------------------------------------------------------------


def _nodes_ready(client: BatchClient, pool_id: str, count: int) -> list[bm.BatchNode]:
    def ready() -> tuple[list[bm.BatchNode]] | None:
        nodes = list(client.list_nodes(pool_id))
        pool = client.get_pool(pool_id)
        if len(nodes) == count and all(n.state == "idle" for n in nodes) and pool.allocation_state == "steady":
            return (nodes,)
        return None

    result: tuple[list[bm.BatchNode]] = wait_for(ready, f"{count} idle nodes in {pool_id}")
    return result[0]


@pytest.fixture(scope="module")
def node_pool(client: BatchClient) -> str:
    client.create_pool(pool_options("node-pool", target_dedicated_nodes=2, target_low_priority_nodes=1))
    _nodes_ready(client, "node-pool", 3)
    return "node-pool"


def test_pool_allocates_nodes(client: BatchClient, node_pool: str) -> None:
    pool = client.get_pool(node_pool)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (2, 1)
    nodes = list(client.list_nodes(node_pool))
    assert sorted(bool(n.is_dedicated) for n in nodes) == [False, True, True]
    node = client.get_node(node_pool, nodes[0].id)
    assert node.id == nodes[0].id and node.state == "idle" and node.scheduling_state == "enabled"
    assert node.vm_size == "standard_d2s_v3"
    assert failure(client.get_node, node_pool, "tvm-nope")[:2] == (404, "NodeNotFound")
    counts = [c for c in client.list_pool_node_counts() if c.pool_id == node_pool][0]
    assert counts.dedicated and counts.low_priority
    assert (counts.dedicated.idle, counts.dedicated.total, counts.low_priority.total) == (2, 2, 1)


def test_list_nodes_filter_and_select(client: BatchClient, node_pool: str) -> None:
    idle = list(client.list_nodes(node_pool, filter="state eq 'idle'"))
    assert len(idle) == 3
    assert list(client.list_nodes(node_pool, filter="state eq 'running'")) == []
    selected = list(client.list_nodes(node_pool, select=["id", "state"], max_results=1))
    assert len(selected) == 3 and all(n.vm_size is None for n in selected)
    status, body = raw(client, "GET", f"/pools/{node_pool}/nodes?$filter=bogus%20eq%201")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")


def test_disable_and_enable_scheduling(client: BatchClient, node_pool: str) -> None:
    node_id = list(client.list_nodes(node_pool))[0].id
    client.disable_node_scheduling(node_pool, node_id, bm.BatchNodeDisableSchedulingOptions(
        node_disable_scheduling_option="taskcompletion"))
    node = client.get_node(node_pool, node_id)
    assert (node.scheduling_state, node.state) == ("disabled", "offline")
    client.enable_node_scheduling(node_pool, node_id)
    node = client.get_node(node_pool, node_id)
    assert (node.scheduling_state, node.state) == ("enabled", "idle")


def test_reboot_and_reimage(client: BatchClient, node_pool: str) -> None:
    node_id = list(client.list_nodes(node_pool))[0].id
    # 15.1 cannot send a reboot without options (it serializes a None content type)
    client.begin_reboot_node(node_pool, node_id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                             polling_interval=0).result(timeout=60)
    wait_for(lambda: client.get_node(node_pool, node_id).state == "idle", "rebooted node idle")
    client.begin_reimage_node(node_pool, node_id, BatchNodeReimageOptions(node_reimage_option="terminate"),
                              polling_interval=0).result(timeout=60)
    wait_for(lambda: client.get_node(node_pool, node_id).state == "idle", "reimaged node idle")


def test_unsupported_node_operations(client: BatchClient, node_pool: str) -> None:
    node_id = list(client.list_nodes(node_pool))[0].id
    assert failure(client.get_node_remote_login_settings, node_pool, node_id)[:2] == \
        (409, "OperationInvalidForCurrentState")
    status, code, _ = failure(client.upload_node_logs, node_pool, node_id, bm.UploadBatchServiceLogsOptions(
        container_url="http://127.0.0.1/c?sig=x", start_time=datetime(2024, 1, 1, tzinfo=UTC)))
    assert (status, code) == (409, "OperationInvalidForCurrentState")
    assert list(client.list_node_extensions(node_pool, node_id)) == []



def test_node_users_on_a_node_that_is_not_isolated(client: BatchClient, node_pool: str) -> None:
    """As root, a node user of a node sharing the host is a host account under the pool's prefix
    (docs/compute.md); otherwise the server cannot make one and says so."""
    node_id = list(client.list_nodes(node_pool))[0].id
    status, body = raw(client, "POST", f"/pools/{node_pool}/nodes/{node_id}/users", b'{"name": "u", "password": "p"}')
    if os.geteuid() != 0:
        assert (status, body["code"]) == (409, "OperationInvalidForCurrentState")
        return
    assert status == 201, body
    host_name = accounts.host_name(node_pool, "u")
    assert pwd.getpwnam(host_name).pw_dir == f"/home/{host_name}"
    assert raw(client, "POST", f"/pools/{node_pool}/nodes/{node_id}/users", b'{"name": "u"}')[1]["code"] == \
        "NodeUserExists"
    assert raw(client, "DELETE", f"/pools/{node_pool}/nodes/{node_id}/users/u")[0] == 200
    assert raw(client, "DELETE", f"/pools/{node_pool}/nodes/{node_id}/users/u")[1]["code"] == "NodeUserNotFound"
    assert host_name not in {entry.pw_name for entry in pwd.getpwall()}


def test_resize_and_remove_nodes(client: BatchClient) -> None:
    client.create_pool(pool_options("rs-pool", target_dedicated_nodes=1))
    _nodes_ready(client, "rs-pool", 1)
    client.begin_resize_pool("rs-pool", bm.BatchPoolResizeOptions(target_dedicated_nodes=3),
                             polling_interval=0).result(timeout=60)
    nodes = _nodes_ready(client, "rs-pool", 3)
    assert client.get_pool("rs-pool").current_dedicated_nodes == 3
    victim = nodes[0].id
    client.begin_remove_nodes("rs-pool", bm.BatchNodeRemoveOptions(node_ids=[victim]),
                              polling_interval=0).result(timeout=60)
    remaining = _nodes_ready(client, "rs-pool", 2)
    assert victim not in [n.id for n in remaining]
    assert client.get_pool("rs-pool").target_dedicated_nodes == 2
    status, code, _ = failure(client.begin_remove_nodes, "rs-pool",
                              bm.BatchNodeRemoveOptions(node_ids=["tvm-nope"]), polling_interval=0)
    assert (status, code) == (404, "NodeNotFound")
    client.begin_stop_pool_resize("rs-pool", polling_interval=0).result(timeout=60)
    assert client.get_pool("rs-pool").allocation_state == "steady"
    client.begin_resize_pool("rs-pool", bm.BatchPoolResizeOptions(target_dedicated_nodes=0),
                             polling_interval=0).result(timeout=60)
    _nodes_ready(client, "rs-pool", 0)
    client.begin_delete_pool("rs-pool", polling_interval=0).result(timeout=60)
    assert failure(client.get_pool, "rs-pool")[:2] == (404, "PoolNotFound")


def test_delete_pool_with_nodes(client: BatchClient) -> None:
    client.create_pool(pool_options("gone-pool", target_dedicated_nodes=2))
    _nodes_ready(client, "gone-pool", 2)
    client.begin_delete_pool("gone-pool", polling_interval=0).result(timeout=60)
    assert failure(client.get_pool, "gone-pool")[:2] == (404, "PoolNotFound")
    assert failure(lambda: list(client.list_nodes("gone-pool")))[:2] == (404, "PoolNotFound")
