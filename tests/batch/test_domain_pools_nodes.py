"""Pool, node and image rules without a network: requests in, documents and engine calls out."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import images, nodes, pools
from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.batch.store import BatchStore
from openbatch.config import Settings
from openbatch.node import containers

T = TypeVar("T")
ACCOUNT = "acct"
BASE = "http://batch.test"
JAMMY = {"imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-LTS"},
         "nodeAgentSKUId": "batch.node.ubuntu 22.04"}


class Recorder:
    """EngineHooks that remember what they were told."""

    def __init__(self) -> None:
        self.pools: list[Doc] = []
        self.performed: list[ins.Instruction] = []

    def pool_changed(self, account: str, pool: Doc) -> None:
        self.pools.append(dict(pool))

    def job_changed(self, account: str, job: Doc) -> None:
        return None

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        return None

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        return None

    def perform(self, account: str, instructions: list[ins.Instruction]) -> None:
        self.performed += instructions


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[BatchContext]:
    store = BatchStore(tmp_path / "batch.db")
    yield BatchContext(settings=Settings(data_dir=tmp_path), store=store, hooks=Recorder(), compute=None)  # type: ignore[arg-type]
    store.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def hooks(ctx: BatchContext) -> Recorder:
    assert isinstance(ctx.hooks, Recorder)
    return ctx.hooks


def body(pool_id: str = "p", **kw: Any) -> Doc:
    return {"id": pool_id, "vmSize": "STANDARD_A1", "virtualMachineConfiguration": JAMMY, **kw}


def add(ctx: BatchContext, pool_id: str = "p", **kw: Any) -> Doc:
    return run(pools.add_pool(ctx, ACCOUNT, body(pool_id, **kw), BASE))


def add_node(ctx: BatchContext, pool_id: str, node_id: str, state: str = "idle", dedicated: bool = True,
             **kw: Any) -> Doc:
    """A node document as the engine writes it."""
    node = {"id": node_id, "poolId": pool_id, "state": state, "schedulingState": "enabled",
            "isDedicated": dedicated, "stateTransitionTime": "2024-01-01T00:00:00Z", **kw}
    ctx.store.put("node", ACCOUNT, node, parent=pool_id)
    return node


# --- images ----------------------------------------------------------------------------------


def test_every_advertised_image_is_accepted() -> None:
    for image in images.supported_images():
        vm = {"imageReference": image["imageReference"], "nodeAgentSKUId": image["nodeAgentSKUId"].upper()}
        assert images.check_virtual_machine_configuration(vm)["nodeAgentSKUId"] == image["nodeAgentSKUId"]
    assert {i["osType"] for i in images.supported_images()} == {"linux"}


@pytest.mark.parametrize("key", ["virtualMachineImageId", "sharedGalleryImageId", "communityGalleryImageId"])
def test_custom_images_are_refused_like_an_unknown_marketplace_image(key: str) -> None:
    """None is offered here: accepting one would run the pool on this host while claiming the image."""
    vm = {"imageReference": {key: "/subscriptions/x/images/mine"}, "nodeAgentSKUId": "batch.node.debian 12"}
    with pytest.raises(e.InvalidPropertyValue) as refused:
        images.check_virtual_machine_configuration(vm)
    assert refused.value.values["PropertyName"] == f"virtualMachineConfiguration.imageReference.{key}"
    unknown = {"imageReference": {"publisher": "canonical", "offer": "nope", "sku": "1"},
               "nodeAgentSKUId": "batch.node.debian 12"}
    with pytest.raises(e.InvalidPropertyValue):
        images.check_virtual_machine_configuration(unknown)
    with pytest.raises(e.InvalidPropertyValue):
        images.check_virtual_machine_configuration(
            {"imageReference": {"virtualMachineImageId": "/x", "publisher": "canonical"},
             "nodeAgentSKUId": "batch.node.debian 12"})


def test_container_pools_need_a_container_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    container_pool = {**JAMMY, "containerConfiguration": {"type": "dockerCompatible", "containerImageNames": ["i"]}}
    monkeypatch.setattr(containers, "runtime", lambda: None)
    with pytest.raises(e.InvalidPropertyValue) as exc:
        images.check_virtual_machine_configuration(container_pool)
    assert exc.value.values["PropertyName"] == "virtualMachineConfiguration.containerConfiguration"
    monkeypatch.setattr(containers, "runtime", lambda: containers.Runtime("podman", "/usr/bin/podman"))
    assert images.check_virtual_machine_configuration(container_pool)["containerConfiguration"]["type"] == "dockerCompatible"
    with pytest.raises(e.InvalidPropertyValue) as exc:
        images.check_virtual_machine_configuration({**JAMMY, "containerConfiguration": {"type": "lxc"}})
    assert exc.value.values["PropertyName"] == "virtualMachineConfiguration.containerConfiguration.type"
    with pytest.raises(e.MissingRequiredProperty):
        images.check_virtual_machine_configuration({**JAMMY, "containerConfiguration": {}})


@pytest.mark.parametrize(
    ("vm", "error", "prop"),
    [
        ({"nodeAgentSKUId": "batch.node.ubuntu 22.04"}, e.MissingRequiredProperty,
         "virtualMachineConfiguration.imageReference"),
        ({"imageReference": JAMMY["imageReference"]}, e.MissingRequiredProperty,
         "virtualMachineConfiguration.nodeAgentSKUId"),
        ({**JAMMY, "nodeAgentSKUId": "batch.node.windows amd64"}, e.InvalidPropertyValue,
         "virtualMachineConfiguration.nodeAgentSKUId"),
        ({**JAMMY, "nodeAgentSKUId": "batch.node.ubuntu 20.04"}, e.InvalidPropertyValue,
         "virtualMachineConfiguration.imageReference.sku"),
        ({**JAMMY, "imageReference": {"publisher": "canonical", "offer": "nope", "sku": "1"}}, e.InvalidPropertyValue,
         "virtualMachineConfiguration.imageReference.sku"),
        ({**JAMMY, "windowsConfiguration": {"enableAutomaticUpdates": False}}, e.InvalidPropertyValue,
         "virtualMachineConfiguration.windowsConfiguration"),
        ({**JAMMY, "imageReference": "canonical"}, e.InvalidRequestBody,
         "virtualMachineConfiguration.imageReference"),
    ],
)
def test_bad_vm_configurations(vm: Doc, error: type[e.BatchError], prop: str) -> None:
    with pytest.raises(error) as exc:
        images.check_virtual_machine_configuration(vm)
    assert exc.value.values["PropertyName"] == prop


# --- new pools ---------------------------------------------------------------------------------


def test_new_pool_defaults() -> None:
    doc = pools.new_pool(body("Pool-1"), BASE, "2024-01-01T00:00:00.000000Z")
    assert doc["id"] == "Pool-1" and doc["url"] == f"{BASE}/pools/Pool-1"
    assert (doc["state"], doc["allocationState"]) == ("active", "steady")
    assert doc["vmSize"] == "standard_a1" and doc["resizeTimeout"] == "PT15M"
    assert (doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"]) == (0, 0)
    assert (doc["currentDedicatedNodes"], doc["currentLowPriorityNodes"]) == (0, 0)
    assert doc["taskSlotsPerNode"] == 1 and doc["taskSchedulingPolicy"] == {"nodeFillType": "spread"}
    assert doc["enableAutoScale"] is False and "autoScaleFormula" not in doc
    assert doc["eTag"].startswith("0x") and doc["lastModified"] == doc["creationTime"]
    assert doc["virtualMachineConfiguration"]["nodeAgentSKUId"] == "batch.node.ubuntu 22.04"
    assert doc["virtualMachineConfiguration"]["imageReference"]["version"] == "latest"


def test_new_pool_with_targets_is_resizing() -> None:
    doc = pools.new_pool(body(targetDedicatedNodes=2, targetLowPriorityNodes=1, resizeTimeout="PT300S"), BASE, "t")
    assert doc["allocationState"] == "resizing"
    assert doc["resizeTimeout"] == "PT5M"


def test_new_pool_settings_are_kept_and_checked() -> None:
    doc = pools.new_pool(body(
        taskSlotsPerNode=8, taskSchedulingPolicy={"nodeFillType": "Pack"},
        startTask={"commandLine": "/bin/true", "userIdentity": {"autoUser": {"elevationLevel": "Admin"}}},
        userAccounts=[{"name": "u", "password": "secret", "elevationLevel": "admin"}],
        metadata=[{"name": "a", "value": "1"}], enableAutoScale=True, autoScaleFormula="$TargetDedicatedNodes=1;",
    ), BASE, "t")
    assert doc["taskSlotsPerNode"] == 8 and doc["taskSchedulingPolicy"] == {"nodeFillType": "pack"}
    assert doc["startTask"]["userIdentity"] == {"autoUser": {"elevationLevel": "admin"}}
    assert doc["startTask"]["maxTaskRetryCount"] == 0 and doc["startTask"]["waitForSuccess"] is True
    assert doc["userAccounts"] == [{"name": "u", "elevationLevel": "admin"}]  # passwords are never returned
    assert doc["autoScaleFormula"] == "$TargetDedicatedNodes=1;" and doc["autoScaleEvaluationInterval"] == "PT15M"


@pytest.mark.parametrize(
    ("extra", "error", "prop"),
    [
        ({"id": "bad id"}, e.InvalidPropertyValue, "id"),
        ({"id": None}, e.MissingRequiredProperty, "id"),
        ({"vmSize": None}, e.MissingRequiredProperty, "vmSize"),
        ({"virtualMachineConfiguration": None}, e.MissingRequiredProperty, "virtualMachineConfiguration"),
        ({"cloudServiceConfiguration": {"osFamily": "6"}}, e.InvalidPropertyValue, "cloudServiceConfiguration"),
        ({"taskSlotsPerNode": 0}, e.InvalidPropertyValue, "taskSlotsPerNode"),
        ({"taskSlotsPerNode": "2"}, e.InvalidRequestBody, "taskSlotsPerNode"),
        ({"targetDedicatedNodes": -1}, e.InvalidPropertyValue, "targetDedicatedNodes"),
        ({"targetDedicatedNodes": 10**12}, e.InvalidPropertyValue, "targetDedicatedNodes"),
        ({"targetDedicatedNodes": 600, "targetLowPriorityNodes": 401}, e.InvalidPropertyValue,
         "targetLowPriorityNodes"),
        ({"resizeTimeout": "PT4M59S"}, e.InvalidPropertyValue, "resizeTimeout"),
        ({"resizeTimeout": "soon"}, e.InvalidPropertyValue, "resizeTimeout"),
        ({"enableAutoScale": True}, e.MissingRequiredProperty, "autoScaleFormula"),
        ({"enableAutoScale": True, "autoScaleFormula": "x", "autoScaleEvaluationInterval": "PT1M"},
         e.InvalidPropertyValue, "autoScaleEvaluationInterval"),
        ({"enableAutoScale": "yes"}, e.InvalidRequestBody, "enableAutoScale"),
        ({"taskSchedulingPolicy": {}}, e.MissingRequiredProperty, "taskSchedulingPolicy.nodeFillType"),
        ({"taskSchedulingPolicy": {"nodeFillType": "dense"}}, e.InvalidPropertyValue,
         "taskSchedulingPolicy.nodeFillType"),
        ({"startTask": {}}, e.MissingRequiredProperty, "startTask.commandLine"),
        ({"startTask": {"commandLine": "x", "maxTaskRetryCount": -2}}, e.InvalidPropertyValue,
         "startTask.maxTaskRetryCount"),
        ({"startTask": {"commandLine": "x", "resourceFiles": [{"httpUrl": "http://x"}]}}, e.MissingRequiredProperty,
         "startTask.resourceFiles.filePath"),
        ({"metadata": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}, e.InvalidPropertyValue,
         "metadata.name"),
        ({"userAccounts": [{"name": "u"}]}, e.MissingRequiredProperty, "userAccounts.password"),
        ({"applicationPackageReferences": [{"version": "1"}]}, e.MissingRequiredProperty,
         "applicationPackageReferences.applicationId"),
        ({"mountConfiguration": [{"nfsMountConfiguration": {}}]}, e.InvalidPropertyValue, "mountConfiguration"),
        ({"targetNodeCommunicationMode": "carrier-pigeon"}, e.InvalidPropertyValue, "targetNodeCommunicationMode"),
    ],
)
def test_new_pool_refuses(extra: Doc, error: type[e.BatchError], prop: str) -> None:
    with pytest.raises(error) as exc:
        pools.new_pool(body(**extra) if "id" not in extra else {**body(), **extra}, BASE, "t")
    assert exc.value.values["PropertyName"] == prop


# --- pool operations -------------------------------------------------------------------------


def test_add_refuses_packages_the_account_does_not_have(ctx: BatchContext) -> None:
    with pytest.raises(e.InvalidApplicationPackageReferences) as exc:
        add(ctx, "p", applicationPackageReferences=[{"applicationId": "app"}, {"applicationId": "b", "version": "2"}])
    assert exc.value.values == {"app": "The specified application does not exist.",
                                "b:2": "The specified application does not exist."}
    assert ctx.store.get("pool", ACCOUNT, "p") is None


def test_add_and_duplicates(ctx: BatchContext) -> None:
    doc = add(ctx, "Pool-A", targetDedicatedNodes=1)
    assert ctx.store.get("pool", ACCOUNT, "pool-a") is doc
    assert [p["id"] for p in hooks(ctx).pools] == ["Pool-A"]
    with pytest.raises(e.PoolExists):
        add(ctx, "POOL-a")
    run(pools.delete_pool(ctx, ACCOUNT, "pool-a"))
    with pytest.raises(e.PoolBeingDeleted):
        add(ctx, "Pool-A")
    with pytest.raises(e.PoolNotFound):
        pools.get_pool(ctx, ACCOUNT, "other")


def test_delete_asks_the_engine_to_remove_nodes(ctx: BatchContext) -> None:
    add(ctx)
    doc = run(pools.delete_pool(ctx, ACCOUNT, "p"))
    assert doc["state"] == "deleting"
    assert ins.RemovePoolNodes(pool_id="p") in hooks(ctx).performed
    assert hooks(ctx).pools[-1]["state"] == "deleting"
    for operation in (
        pools.delete_pool(ctx, ACCOUNT, "p"),
        pools.patch_pool(ctx, ACCOUNT, "p", {"metadata": []}),
        pools.resize_pool(ctx, ACCOUNT, "p", {"targetDedicatedNodes": 1}),
        pools.stop_resize_pool(ctx, ACCOUNT, "p"),
        pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "x"}),
        nodes.restart_node(ctx, ACCOUNT, "p", "n", {}, reimage=False),
    ):
        with pytest.raises(e.PoolBeingDeleted):
            run(operation)
    assert pools.get_pool(ctx, ACCOUNT, "p")["state"] == "deleting"  # still readable


def test_resize_and_stop(ctx: BatchContext) -> None:
    before = add(ctx)["eTag"]
    doc = run(pools.resize_pool(ctx, ACCOUNT, "p", {"targetDedicatedNodes": 3, "nodeDeallocationOption": "Terminate"}))
    assert (doc["allocationState"], doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"]) == ("resizing", 3, 0)
    assert doc["_nodeDeallocationOption"] == "terminate" and doc["eTag"] != before
    assert hooks(ctx).pools[-1]["targetDedicatedNodes"] == 3
    with pytest.raises(e.PoolBeingResized):
        run(pools.resize_pool(ctx, ACCOUNT, "p", {"targetDedicatedNodes": 1}))
    with pytest.raises(e.InvalidPropertyValue):
        run(pools.resize_pool(ctx, ACCOUNT, "p", {"nodeDeallocationOption": "never"}))
    with pytest.raises(e.InvalidPropertyValue):
        run(pools.resize_pool(ctx, ACCOUNT, "p", {"targetLowPriorityNodes": pools.MAX_POOL_NODES + 1}))
    assert run(pools.stop_resize_pool(ctx, ACCOUNT, "p"))["allocationState"] == "stopping"
    assert run(pools.stop_resize_pool(ctx, ACCOUNT, "p"))["allocationState"] == "stopping"  # nothing more to stop


def test_remove_nodes(ctx: BatchContext) -> None:
    pool = add(ctx)
    pool.update(allocationState="steady", targetDedicatedNodes=2, targetLowPriorityNodes=1)
    add_node(ctx, "p", "n1")
    add_node(ctx, "p", "n2")
    add_node(ctx, "p", "n3", dedicated=False)
    with pytest.raises(e.NodeNotFound):
        run(pools.remove_nodes(ctx, ACCOUNT, "p", {"nodeList": ["n1", "ghost"]}))
    with pytest.raises(e.InvalidPropertyValue):
        run(pools.remove_nodes(ctx, ACCOUNT, "p", {"nodeList": [f"n{i}" for i in range(101)]}))
    with pytest.raises(e.MissingRequiredProperty):
        run(pools.remove_nodes(ctx, ACCOUNT, "p", {}))
    doc = run(pools.remove_nodes(ctx, ACCOUNT, "p", {"nodeList": ["N1", "n3"], "nodeDeallocationOption": "taskcompletion"}))
    assert (doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"], doc["allocationState"]) == (1, 0, "resizing")
    assert ctx.store.get("node", ACCOUNT, "n1", parent="p")["state"] == "leavingpool"  # type: ignore[index]
    assert ins.RemoveNode(pool_id="p", node_id="n1", requeue="taskcompletion") in hooks(ctx).performed
    assert ins.RemoveNode(pool_id="p", node_id="n3", requeue="taskcompletion") in hooks(ctx).performed
    with pytest.raises(e.PoolBeingResized):
        run(pools.remove_nodes(ctx, ACCOUNT, "p", {"nodeList": ["n2"]}))


def test_patch_and_update_properties(ctx: BatchContext) -> None:
    add(ctx, metadata=[{"name": "a", "value": "1"}], startTask={"commandLine": "/bin/true"})
    doc = run(pools.patch_pool(ctx, ACCOUNT, "p", {"startTask": {"commandLine": "/bin/false"}, "taskSlotsPerNode": 2}))
    assert doc["startTask"]["commandLine"] == "/bin/false" and doc["metadata"] == [{"name": "a", "value": "1"}]
    assert doc["taskSlotsPerNode"] == 2
    doc = run(pools.patch_pool(ctx, ACCOUNT, "p", {"metadata": []}))
    assert "metadata" not in doc
    add_node(ctx, "p", "n1")
    with pytest.raises(e.OperationInvalidForCurrentState):
        run(pools.patch_pool(ctx, ACCOUNT, "p", {"vmSize": "standard_d2"}))
    run(pools.patch_pool(ctx, ACCOUNT, "p", {"targetNodeCommunicationMode": "Simplified"}))
    assert pools.get_pool(ctx, ACCOUNT, "p")["targetNodeCommunicationMode"] == "simplified"
    with pytest.raises(e.MissingRequiredProperty):
        run(pools.update_pool_properties(ctx, ACCOUNT, "p", {"metadata": []}))
    doc = run(pools.update_pool_properties(ctx, ACCOUNT, "p", {
        "applicationPackageReferences": [], "metadata": [{"name": "b", "value": "2"}]}))
    assert "startTask" not in doc and doc["metadata"] == [{"name": "b", "value": "2"}]
    assert doc["targetNodeCommunicationMode"] == "default"


def test_list_pages_by_id(ctx: BatchContext) -> None:
    for name in ("b", "A", "c", "d"):
        add(ctx, name)
    first, token = pools.list_pools(ctx, ACCOUNT, lambda d: True, None, 3)
    assert [d["id"] for d in first] == ["A", "b", "c"] and token == "c"
    rest, token = pools.list_pools(ctx, ACCOUNT, lambda d: True, token, 3)
    assert [d["id"] for d in rest] == ["d"] and token is None


# --- nodes -----------------------------------------------------------------------------------


def test_reboot_and_reimage(ctx: BatchContext) -> None:
    add(ctx)
    add_node(ctx, "p", "n1")
    add_node(ctx, "p", "n2", state="creating")
    node = run(nodes.restart_node(ctx, ACCOUNT, "p", "N1", {"nodeRebootOption": "terminate"}, reimage=False))
    assert node["state"] == "rebooting"
    assert ins.RestartNode(pool_id="p", node_id="n1", reimage=False, option="terminate") in hooks(ctx).performed
    with pytest.raises(e.OperationInvalidForCurrentState):
        run(nodes.restart_node(ctx, ACCOUNT, "p", "n1", {}, reimage=True))
    with pytest.raises(e.OperationInvalidForCurrentState):
        run(nodes.restart_node(ctx, ACCOUNT, "p", "n2", {}, reimage=False))
    with pytest.raises(e.NodeNotFound):
        run(nodes.restart_node(ctx, ACCOUNT, "p", "ghost", {}, reimage=False))
    with pytest.raises(e.PoolNotFound):
        run(nodes.restart_node(ctx, ACCOUNT, "ghost", "n1", {}, reimage=False))
    with pytest.raises(e.InvalidPropertyValue):
        run(nodes.restart_node(ctx, ACCOUNT, "p", "n1", {"nodeRebootOption": "now"}, reimage=False))


def test_disable_and_enable_scheduling(ctx: BatchContext) -> None:
    add(ctx)
    add_node(ctx, "p", "idle")
    add_node(ctx, "p", "busy", state="running", runningTasksCount=1)
    add_node(ctx, "p", "draining", state="running", runningTasksCount=1)
    add_node(ctx, "p", "booting", state="starting")
    idle = run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "idle", {}))
    assert (idle["state"], idle["schedulingState"]) == ("offline", "disabled")
    busy = run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "busy", {"nodeDisableSchedulingOption": "requeue"}))
    assert busy["state"] == "offline"
    assert ins.StopNodeTasks(pool_id="p", node_id="busy", option="requeue") in hooks(ctx).performed
    draining = run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "draining",
                                            {"nodeDisableSchedulingOption": "taskcompletion"}))
    assert (draining["state"], draining["schedulingState"]) == ("running", "disabled")
    booting = run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "booting", {}))
    assert (booting["state"], booting["schedulingState"]) == ("starting", "disabled")
    assert run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "idle", {}))["state"] == "offline"  # already disabled
    with pytest.raises(e.InvalidPropertyValue):
        run(nodes.disable_scheduling(ctx, ACCOUNT, "p", "idle", {"nodeDisableSchedulingOption": "retaineddata"}))
    seen = len(hooks(ctx).pools)
    assert run(nodes.enable_scheduling(ctx, ACCOUNT, "p", "idle"))["state"] == "idle"
    assert run(nodes.enable_scheduling(ctx, ACCOUNT, "p", "busy"))["state"] == "running"
    assert len(hooks(ctx).pools) == seen + 2  # the scheduler hears of the free slots
    assert ctx.store.get("node", ACCOUNT, "busy", parent="p")["schedulingState"] == "enabled"  # type: ignore[index]


def test_node_counts_and_listing(ctx: BatchContext) -> None:
    add(ctx, "p1")
    add(ctx, "p2")
    add_node(ctx, "p1", "a")
    add_node(ctx, "p1", "b", state="starttaskfailed")
    add_node(ctx, "p1", "c", state="waitingforstarttask", dedicated=False)
    counts, token = nodes.list_node_counts(ctx, ACCOUNT, lambda d: True, None, 10)
    assert token is None and [c["poolId"] for c in counts] == ["p1", "p2"]
    p1 = counts[0]
    assert (p1["dedicated"]["idle"], p1["dedicated"]["startTaskFailed"], p1["dedicated"]["total"]) == (1, 1, 2)
    assert (p1["lowPriority"]["waitingForStartTask"], p1["lowPriority"]["total"]) == (1, 1)
    assert counts[1]["dedicated"]["total"] == 0 and set(counts[1]["dedicated"]) >= {"upgradingOS", "leavingPool"}
    only_p2, _ = nodes.list_node_counts(ctx, ACCOUNT, lambda d: d["poolId"] == "p2", None, 10)
    assert [c["poolId"] for c in only_p2] == ["p2"]
    listed, token = nodes.list_nodes(ctx, ACCOUNT, "p1", lambda n: n["state"] != "idle", None, 1)
    assert [n["id"] for n in listed] == ["b"] and token == "b"
    with pytest.raises(e.PoolNotFound):
        nodes.list_nodes(ctx, ACCOUNT, "ghost", lambda n: True, None, 10)


def test_what_local_nodes_refuse(ctx: BatchContext) -> None:
    add(ctx)
    add_node(ctx, "p", "n1")
    with pytest.raises(e.OperationInvalidForCurrentState):
        nodes.refuse(ctx, ACCOUNT, "p", "n1", "remote login")
    with pytest.raises(e.NodeNotFound):
        nodes.refuse(ctx, ACCOUNT, "p", "ghost", "remote login")
    with pytest.raises(e.MissingRequiredProperty):
        nodes.upload_logs(ctx, ACCOUNT, "p", "n1", {"startTime": "2024-01-01T00:00:00Z"})
    with pytest.raises(e.OperationInvalidForCurrentState):
        nodes.upload_logs(ctx, ACCOUNT, "p", "n1", {"containerUrl": "http://x", "startTime": "2024-01-01T00:00:00Z"})
    with pytest.raises(e.OperationInvalidForCurrentState):
        nodes.start_node(ctx, ACCOUNT, "p", "n1")
    with pytest.raises(e.OperationInvalidForCurrentState):
        nodes.deallocate_node(ctx, ACCOUNT, "p", "n1", {})
    with pytest.raises(e.ResourceNotFound):
        nodes.get_extension(ctx, ACCOUNT, "p", "n1", "ext")
