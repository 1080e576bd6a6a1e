"""Pools the live-server Batch tests share: the image every pool names, and a pool made and
waited for until its nodes are ready."""

from __future__ import annotations

from typing import Any

from azure.batch import BatchClient
from azure.batch import models as m

from tests.helpers.waiting import wait_for

IMAGE = m.VirtualMachineConfiguration(
    image_reference=m.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                            sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")


def make_pool(client: BatchClient, pool_id: str, nodes: int = 1, slots: int = 1, timeout: float = 60.0,
              **kwargs: Any) -> list[m.BatchNode]:
    """A pool of ``nodes`` nodes, returned once every node is idle (or its start task failed)."""
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                                target_dedicated_nodes=nodes, task_slots_per_node=slots, **kwargs))

    def ready() -> list[m.BatchNode] | None:
        found = list(client.list_nodes(pool_id))
        done = len(found) == nodes and all(n.state in ("idle", "starttaskfailed") for n in found)
        return found if done else None

    return list(wait_for(ready, f"pool {pool_id} to be ready", timeout))
