"""Pools, nodes and account operations through azure-batch 1.0.0 (api-version 2016-07-01.3.1) and
14.2.0 (2024-02-01.19.0), each in its cached venv (tests/helpers/venvs.py).

1.0.0 is the generation of the original Batch tutorials: it picks an image with
``list_node_agent_skus`` and speaks ``targetDedicated`` / ``currentDedicated`` / ``maxTasksPerNode``
/ ``runElevated``; 14.x speaks the modern names with the msrest models.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script

LEGACY_PRELUDE = """
import json, os
import azure.batch.batch_service_client as batch
import azure.batch.batch_auth as batchauth
import azure.batch.models as bm

client = batch.BatchServiceClient(batchauth.SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                                  base_url=os.environ["OB_BATCH_URL"])

def dump(doc):
    print(json.dumps(doc, default=lambda o: getattr(o, "value", str(o))))

def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except bm.BatchErrorException as exc:
        values = {v.key: v.value for v in (exc.error.values or [])}
        return {"status": exc.response.status_code, "code": exc.error.code, "values": values}
    return None

def select_latest_verified_vm_image_with_node_agent_sku(publisher, offer, sku_starts_with):
    # the helper of the original azure-batch-samples tutorials, verbatim in behaviour
    node_agent_skus = client.account.list_node_agent_skus()
    skus_to_use = [
        (sku, image_ref) for sku in node_agent_skus for image_ref in sorted(
            sku.verified_image_references, key=lambda item: item.sku)
        if image_ref.publisher.lower() == publisher.lower() and
        image_ref.offer.lower() == offer.lower() and
        image_ref.sku.startswith(sku_starts_with)
    ]
    sku_to_use, image_ref_to_use = skus_to_use[0]
    return (sku_to_use.id, image_ref_to_use)
"""

V14_PRELUDE = """
import json, os
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as bm

client = BatchServiceClient(SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                            batch_url=os.environ["OB_BATCH_URL"])

def dump(doc):
    print(json.dumps(doc, default=lambda o: getattr(o, "value", str(o))))

def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except bm.BatchErrorException as exc:
        values = {v.key: v.value for v in (exc.error.values or [])}
        return {"status": exc.response.status_code, "code": exc.error.code, "values": values}
    return None

JAMMY = bm.VirtualMachineConfiguration(
    image_reference=bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
"""


def env(server: LiveServer) -> dict[str, str]:
    return {"OB_ACCOUNT": server.account, "OB_KEY": server.key, "OB_BATCH_URL": server.batch_url}


def legacy(server: LiveServer, body: str) -> Any:
    return run_script("legacy", LEGACY_PRELUDE + body, env(server))


def v14(server: LiveServer, body: str) -> Any:
    return run_script("batch14", V14_PRELUDE + body, env(server))


# --- azure-batch 1.0.0 -------------------------------------------------------------------------


def test_legacy_tutorial_pool(server: LiveServer) -> None:
    out = legacy(server, """
sku_id, image = select_latest_verified_vm_image_with_node_agent_sku("Canonical", "UbuntuServer", "16.04")
skus = [s.id for s in client.account.list_node_agent_skus()]
pool = bm.PoolAddParameter(
    id="LegacyPool", vm_size="STANDARD_A1", target_dedicated=0, max_tasks_per_node=2,
    virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id=sku_id),
    start_task=bm.StartTask(command_line="/bin/sh -c 'cp a $AZ_BATCH_NODE_SHARED_DIR'", run_elevated=True,
                            wait_for_success=True,
                            resource_files=[bm.ResourceFile(blob_source="http://127.0.0.1/c/a?sig=x", file_path="a")]),
    metadata=[bm.MetadataItem(name="k", value="v")])
client.pool.add(pool)
got = client.pool.get("legacypool")
listed = [p.id for p in client.pool.list(bm.PoolListOptions(filter="startswith(id,'Legacy')", max_results=1))]
dump({
    "sku_id": sku_id, "image": [image.publisher, image.offer, image.sku], "skus": skus,
    "id": got.id, "target": got.target_dedicated, "current": got.current_dedicated,
    "max_tasks": got.max_tasks_per_node, "run_elevated": got.start_task.run_elevated,
    "blob_source": got.start_task.resource_files[0].blob_source, "state": got.state,
    "allocation": got.allocation_state, "listed": listed, "exists": client.pool.exists("LegacyPool"),
    "missing": client.pool.exists("nope"), "vm_size": got.vm_size,
    "dup": error_of(client.pool.add, pool),
    "bad": error_of(client.pool.add, bm.PoolAddParameter(id="bad id", vm_size="small",
        virtual_machine_configuration=pool.virtual_machine_configuration)),
    "cloud": error_of(client.pool.add, bm.PoolAddParameter(id="cloud", vm_size="small",
        cloud_service_configuration=bm.CloudServiceConfiguration(os_family="4"))),
    "ghost": error_of(client.pool.get, "ghost"),
})
""")
    assert out["sku_id"] == "batch.node.ubuntu 16.04"
    assert out["image"] == ["canonical", "ubuntuserver", "16.04-lts"]
    assert "batch.node.ubuntu 22.04" in out["skus"]
    assert (out["id"], out["target"], out["current"], out["max_tasks"]) == ("LegacyPool", 0, 0, 2)
    assert out["run_elevated"] is True and out["blob_source"] == "http://127.0.0.1/c/a?sig=x"
    assert (out["state"], out["allocation"], out["vm_size"]) == ("active", "steady", "standard_a1")
    assert out["listed"] == ["LegacyPool"]
    assert (out["exists"], out["missing"]) == (True, False)
    assert (out["dup"]["status"], out["dup"]["code"]) == (409, "PoolExists")
    assert (out["bad"]["status"], out["bad"]["code"]) == (400, "InvalidPropertyValue")
    assert out["cloud"]["code"] == "InvalidPropertyValue"
    assert out["cloud"]["values"]["PropertyName"] == "cloudServiceConfiguration"
    assert (out["ghost"]["status"], out["ghost"]["code"]) == (404, "PoolNotFound")


def test_legacy_pool_changes(server: LiveServer) -> None:
    out = legacy(server, """
vm = bm.VirtualMachineConfiguration(
    image_reference=bm.ImageReference(publisher="Canonical", offer="UbuntuServer", sku="18.04-LTS", version="latest"),
    node_agent_sku_id="batch.node.ubuntu 18.04")
client.pool.add(bm.PoolAddParameter(id="legacy-changes", vm_size="small", virtual_machine_configuration=vm))
client.pool.patch("legacy-changes", bm.PoolPatchParameter(metadata=[bm.MetadataItem(name="a", value="1")]))
patched = client.pool.get("legacy-changes").metadata
client.pool.update_properties("legacy-changes", bm.PoolUpdatePropertiesParameter(
    certificate_references=[], application_package_references=[], metadata=[],
    start_task=bm.StartTask(command_line="/bin/true")))
updated = client.pool.get("legacy-changes")
client.pool.enable_auto_scale("legacy-changes", auto_scale_formula="$TargetDedicated=1")
run = client.pool.evaluate_auto_scale("legacy-changes", "$TargetDedicated=2; $NodeDeallocationOption=taskcompletion")
auto = client.pool.get("legacy-changes")
client.pool.disable_auto_scale("legacy-changes")
import time
def settle():
    while getattr(client.pool.get("legacy-changes").allocation_state, "value", None) != "steady":
        time.sleep(0.05)
settle()  # the formula's resize
client.pool.resize("legacy-changes", bm.PoolResizeParameter(target_dedicated=0))
settle()
resized = client.pool.get("legacy-changes").target_dedicated
stats = client.pool.get_all_pools_lifetime_statistics()
nodes = [n.id for n in client.compute_node.list("legacy-changes")]
apps = list(client.application.list())
client.pool.delete("legacy-changes")
dump({
    "patched": [[m.name, m.value] for m in patched], "updated_metadata": updated.metadata,
    "start": updated.start_task.command_line, "run_results": run.results, "run_error": run.error,
    "auto": [auto.enable_auto_scale, auto.auto_scale_formula, auto.target_dedicated, auto.auto_scale_run.results],
    "resized": resized,
    "stats": stats.usage_stats.dedicated_core_time.total_seconds(), "nodes": nodes, "apps": apps,
    "after_delete": client.pool.get("legacy-changes").state if client.pool.exists("legacy-changes") else "gone",
    "ghost_node": error_of(client.compute_node.get, "ghost", "tvm-1"),
})
""")
    assert out["patched"] == [["a", "1"]]
    assert out["updated_metadata"] is None and out["start"] == "/bin/true"
    assert out["run_results"] == ("$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;"
                                  "$NodeDeallocationOption=taskcompletion")
    assert out["run_error"] is None
    assert out["auto"] == [True, "$TargetDedicated=1", 1, "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;"
                                                        "$NodeDeallocationOption=requeue"]
    assert out["resized"] == 0 and out["stats"] == 0 and out["nodes"] == [] and out["apps"] == []
    assert out["after_delete"] in ("deleting", "gone")
    assert (out["ghost_node"]["status"], out["ghost_node"]["code"]) == (404, "PoolNotFound")


def test_legacy_pool_nodes(server: LiveServer) -> None:
    out = legacy(server, """
import time
sku_id, image = select_latest_verified_vm_image_with_node_agent_sku("Canonical", "UbuntuServer", "18.04")
client.pool.add(bm.PoolAddParameter(id="legacy-nodes", vm_size="small", target_dedicated=2,
    virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id=sku_id)))
deadline = time.time() + 30
while time.time() < deadline:
    nodes = list(client.compute_node.list("legacy-nodes"))
    if len(nodes) == 2 and all(getattr(n.state, "value", n.state) == "idle" for n in nodes):  # 1.0 enums
        break
    time.sleep(0.05)
pool = client.pool.get("legacy-nodes")
node = client.compute_node.get("legacy-nodes", nodes[0].id)
client.compute_node.disable_scheduling("legacy-nodes", node.id)
disabled = client.compute_node.get("legacy-nodes", node.id).scheduling_state
client.compute_node.enable_scheduling("legacy-nodes", node.id)
client.compute_node.reboot("legacy-nodes", node.id)
client.compute_node.reimage("legacy-nodes", nodes[1].id, node_reimage_option="terminate")
rdp = error_of(client.compute_node.get_remote_login_settings, "legacy-nodes", node.id)

def count_idle(pool_id):
    pool = client.pool.get(pool_id)
    states = [getattr(n.state, "value", n.state) for n in client.compute_node.list(pool_id)]
    steady = getattr(pool.allocation_state, "value", pool.allocation_state) == "steady"
    return len(states) if steady and all(s == "idle" for s in states) else -1

def wait_count(pool_id, count):
    deadline = time.time() + 30
    while count_idle(pool_id) != count and time.time() < deadline:
        time.sleep(0.05)
    return count_idle(pool_id)

after_restart = wait_count("legacy-nodes", 2)
client.pool.remove_nodes("legacy-nodes", bm.NodeRemoveParameter(node_list=[node.id]))
after_remove = wait_count("legacy-nodes", 1)
target_after_remove = client.pool.get("legacy-nodes").target_dedicated
client.pool.resize("legacy-nodes", bm.PoolResizeParameter(target_dedicated=3))
after_grow = wait_count("legacy-nodes", 3)
dump({
    "states": [n.state for n in nodes], "current": pool.current_dedicated, "node": node.id,
    "vm_size": node.vm_size, "disabled": disabled, "rdp": rdp, "start": node.start_task_info,
    "counts": [after_restart, after_remove, target_after_remove, after_grow],
    "current_after": client.pool.get("legacy-nodes").current_dedicated,
})
""")
    assert out["states"] == ["idle", "idle"] and out["current"] == 2
    assert out["vm_size"] == "small" and out["disabled"] == "disabled"
    assert out["rdp"]["code"] == "OperationInvalidForCurrentState"
    assert out["counts"] == [2, 1, 1, 3] and out["current_after"] == 3


# --- azure-batch 14.2.0 ------------------------------------------------------------------------


def test_v14_account_and_pools(server: LiveServer) -> None:
    out = v14(server, """
images = list(client.account.list_supported_images())
pool = bm.PoolAddParameter(id="v14-pool", vm_size="standard_d2s_v3", virtual_machine_configuration=JAMMY,
                           task_slots_per_node=3, target_low_priority_nodes=0,
                           task_scheduling_policy=bm.TaskSchedulingPolicy(node_fill_type="pack"))
client.pool.add(pool)
got = client.pool.get("v14-pool")
client.pool.patch("v14-pool", bm.PoolPatchParameter(start_task=bm.StartTask(
    command_line="/bin/true", user_identity=bm.UserIdentity(auto_user=bm.AutoUserSpecification(
        scope="pool", elevation_level="admin")))))
patched = client.pool.get("v14-pool")
client.pool.update_properties("v14-pool", bm.PoolUpdatePropertiesParameter(
    certificate_references=[], application_package_references=[], metadata=[bm.MetadataItem(name="m", value="v")]))
updated = client.pool.get("v14-pool")
client.pool.resize("v14-pool", bm.PoolResizeParameter(target_dedicated_nodes=0, target_low_priority_nodes=0))
counts = [c.pool_id for c in client.account.list_pool_node_counts()]
listed = [p.id for p in client.pool.list(bm.PoolListOptions(filter="id eq 'v14-pool'", select="id,state"))]
dump({
    "images": [[i.node_agent_sku_id, i.os_type, i.verification_type] for i in images],
    "slots": got.task_slots_per_node, "fill": got.task_scheduling_policy.node_fill_type,
    "elevation": patched.start_task.user_identity.auto_user.elevation_level,
    "metadata": [[m.name, m.value] for m in updated.metadata], "start_removed": updated.start_task is None,
    "counts": counts, "listed": listed, "exists": client.pool.exists("v14-pool"),
    "missing_size": error_of(client.pool.add, bm.PoolAddParameter(id="nosize", vm_size="",
                                                                  virtual_machine_configuration=JAMMY)),
    "ghost": error_of(client.pool.resize, "ghost", bm.PoolResizeParameter(target_dedicated_nodes=1)),
    "nodes": [n.id for n in client.compute_node.list("v14-pool")],
})
""")
    assert ["batch.node.ubuntu 22.04", "linux", "verified"] in out["images"]
    assert (out["slots"], out["fill"], out["elevation"]) == (3, "pack", "admin")
    assert out["metadata"] == [["m", "v"]] and out["start_removed"] is True
    assert "v14-pool" in out["counts"] and out["listed"] == ["v14-pool"] and out["exists"] is True
    assert out["missing_size"]["code"] == "MissingRequiredProperty"
    assert out["missing_size"]["values"]["PropertyName"] == "vmSize"
    assert (out["ghost"]["status"], out["ghost"]["code"]) == (404, "PoolNotFound")
    assert out["nodes"] == []


@pytest.mark.parametrize("generation", ["legacy", "batch14"])
def test_delete_pool_finishes(server: LiveServer, generation: str) -> None:
    prelude = LEGACY_PRELUDE if generation == "legacy" else V14_PRELUDE
    vm = ("bm.VirtualMachineConfiguration(image_reference=bm.ImageReference(publisher='debian', offer='debian-11', "
          "sku='11'), node_agent_sku_id='batch.node.debian 11')")
    size = "target_dedicated=1" if generation == "legacy" else "target_dedicated_nodes=1"
    out = run_script(generation, prelude + f"""
import time
client.pool.add(bm.PoolAddParameter(id="gone-{generation}", vm_size="small", {size}, virtual_machine_configuration={vm}))
client.pool.delete("gone-{generation}")
deadline = time.time() + 30
while client.pool.exists("gone-{generation}") and time.time() < deadline:
    time.sleep(0.05)
dump({{"exists": client.pool.exists("gone-{generation}")}})
""", env(server))
    assert out["exists"] is False


def test_v14_nodes(server: LiveServer) -> None:
    out = v14(server, """
import time

def wait_idle(pool_id, count):
    deadline = time.time() + 30
    while time.time() < deadline:
        nodes = list(client.compute_node.list(pool_id))
        pool = client.pool.get(pool_id)
        if len(nodes) == count and all(n.state == "idle" for n in nodes) and pool.allocation_state == "steady":
            return nodes
        time.sleep(0.05)
    raise AssertionError(f"{pool_id}: {[n.state for n in nodes]} {pool.allocation_state}")

client.pool.add(bm.PoolAddParameter(id="v14-nodes", vm_size="standard_d2s_v3", virtual_machine_configuration=JAMMY,
                                    target_dedicated_nodes=2, target_low_priority_nodes=1,
                                    start_task=bm.StartTask(command_line="/bin/true", wait_for_success=True)))
nodes = wait_idle("v14-nodes", 3)
node = client.compute_node.get("v14-nodes", nodes[0].id)
counts = [c for c in client.account.list_pool_node_counts() if c.pool_id == "v14-nodes"][0]
client.compute_node.disable_scheduling("v14-nodes", node.id, node_disable_scheduling_option="requeue")
offline = client.compute_node.get("v14-nodes", node.id)
client.compute_node.enable_scheduling("v14-nodes", node.id)
client.compute_node.reboot("v14-nodes", node.id, node_reboot_option="terminate")
client.compute_node.reimage("v14-nodes", nodes[1].id)
nodes = wait_idle("v14-nodes", 3)
filtered = [n.id for n in client.compute_node.list("v14-nodes", bm.ComputeNodeListOptions(filter="state eq 'idle'"))]
client.pool.remove_nodes("v14-nodes", bm.NodeRemoveParameter(node_list=[node.id]))
remaining = wait_idle("v14-nodes", 2)
pool = client.pool.get("v14-nodes")
login = error_of(client.compute_node.get_remote_login_settings, "v14-nodes", remaining[0].id)
extensions = list(client.compute_node_extension.list("v14-nodes", remaining[0].id))
client.pool.resize("v14-nodes", bm.PoolResizeParameter(target_dedicated_nodes=0, target_low_priority_nodes=0))
empty = wait_idle("v14-nodes", 0)
dump({
    "dedicated": sorted(n.is_dedicated for n in nodes), "start": node.start_task_info.result,
    "counts": [counts.dedicated.idle, counts.dedicated.total, counts.low_priority.total],
    "offline": [offline.state, offline.scheduling_state], "filtered": len(filtered),
    "remaining": node.id in [n.id for n in remaining],
    "targets": [pool.target_dedicated_nodes, pool.target_low_priority_nodes, pool.current_dedicated_nodes],
    "empty": len(empty), "extensions": extensions, "login": login,
})
""")
    assert out["dedicated"] == [False, True, True] and out["start"] == "success"
    assert out["counts"] == [2, 2, 1]
    assert out["offline"] == ["offline", "disabled"] and out["filtered"] == 3
    assert out["remaining"] is False
    assert out["targets"][:2] in ([1, 1], [2, 0]) and out["empty"] == 0
    assert out["login"]["code"] == "OperationInvalidForCurrentState" and out["extensions"] == []
