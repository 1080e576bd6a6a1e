"""Account operations through azure-batch 15.x: supported images, node counts, applications."""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

API = "2025-06-01"


def send(client: BatchClient, path: str) -> HttpResponse:
    try:
        return client.send_request(HttpRequest("GET", path))
    except HttpResponseError as exc:
        assert isinstance(exc.response, HttpResponse)
        return exc.response


def get(client: BatchClient, path: str) -> tuple[int, dict[str, Any]]:
    sep = "&" if "?" in path else "?"
    response = send(client, f"{path}{sep}api-version={API}")
    return response.status_code, response.json()


def test_supported_images_are_linux_images_of_this_host(client: BatchClient) -> None:
    images = list(client.list_supported_images())
    assert images and all(i.os_type == "linux" and i.verification_type == "verified" for i in images)
    by_sku = {i.node_agent_sku_id: i.image_reference for i in images}
    jammy = by_sku["batch.node.ubuntu 22.04"]
    assert (jammy.publisher, jammy.offer, jammy.sku) == ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts")
    assert by_sku["batch.node.ubuntu 24.04"].offer == "ubuntu-24_04-lts"
    assert by_sku["batch.node.debian 12"].offer == "debian-12"
    assert not [s for s in by_sku if "windows" in s]


def test_supported_images_filter_and_paging(client: BatchClient) -> None:
    everything = list(client.list_supported_images())
    paged = list(client.list_supported_images(max_results=2))
    assert [i.node_agent_sku_id for i in paged] == [i.node_agent_sku_id for i in everything]
    debian = list(client.list_supported_images(filter="startswith(nodeAgentSKUId, 'batch.node.debian')"))
    assert debian and all("debian" in i.node_agent_sku_id for i in debian)
    assert list(client.list_supported_images(filter="osType eq 'windows'")) == []
    assert len(list(client.list_supported_images(filter="verificationType eq 'verified'"))) == len(everything)
    status, body = get(client, "/supportedimages?$filter=vmSize%20eq%20'x'")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")


def test_every_supported_image_makes_a_pool(client: BatchClient) -> None:
    for n, image in enumerate(client.list_supported_images()):
        client.create_pool(bm.BatchPoolCreateOptions(
            id=f"img-{n}", vm_size="standard_d2s_v3",
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=image.image_reference, node_agent_sku_id=image.node_agent_sku_id)))
        config = client.get_pool(f"img-{n}").virtual_machine_configuration
        assert config and config.node_agent_sku_id == image.node_agent_sku_id


def test_pool_node_counts(client: BatchClient) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(
        id="counted", vm_size="standard_d2s_v3", virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="debian", offer="debian-12", sku="12"),
            node_agent_sku_id="batch.node.debian 12")))
    counts = list(client.list_pool_node_counts(filter="poolId eq 'counted'"))
    assert [c.pool_id for c in counts] == ["counted"]
    dedicated, low = counts[0].dedicated, counts[0].low_priority
    assert dedicated and low and dedicated.total == 0 and low.idle == 0
    assert dedicated.start_task_failed == 0 and dedicated.waiting_for_start_task == 0
    every = list(client.list_pool_node_counts(max_results=1))
    assert "counted" in [c.pool_id for c in every] and len(every) >= 2
    status, body = get(client, "/nodecounts?maxresults=11")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")


def test_applications_are_empty(client: BatchClient) -> None:
    assert list(client.list_applications()) == []
    with pytest.raises(HttpResponseError) as exc:
        client.get_application("my-app")
    assert exc.value.status_code == 404
    status, body = get(client, "/applications/my-app")
    assert (status, body["code"]) == (404, "ApplicationNotFound")


def test_api_version_is_required(client: BatchClient) -> None:
    response = send(client, "/supportedimages")
    assert response.status_code == 400
    assert response.json()["code"] == "MissingRequiredQueryParameter"
