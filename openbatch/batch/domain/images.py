"""The images this server advertises (``/supportedimages``, ``/nodeagentskus``) and accepts for pools.

openbatch runs every node on the server's own host, so an "image" only names what a pool asks
for: any Linux image listed here maps to this machine. The list keeps the marketplace names Azure
uses today (Canonical Ubuntu 20.04/22.04/24.04, Debian 11/12) plus the older Ubuntu entries the
original Batch tutorials select (``UbuntuServer`` 16.04/18.04), so programs written for any SDK
generation find the image they look for. Windows images are not offered: task command lines run
on this host as Linux processes.

Custom images (``virtualMachineImageId``, shared or community gallery ids) name images this server
does not have: they are refused as an unknown marketplace image is (the pool would otherwise run on
whatever this host is while claiming the custom image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbatch.batch.wire import models
from openbatch.node import containers

Doc = dict[str, Any]

_LINUX_CAPABILITIES: list[str] = []


def _image(sku_id: str, publisher: str, offer: str, sku: str) -> Doc:
    return {
        "nodeAgentSKUId": sku_id,
        "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
        "osType": "linux",
        "capabilities": list(_LINUX_CAPABILITIES),
        "verificationType": "verified",
    }


SUPPORTED_IMAGES: tuple[Doc, ...] = (
    _image("batch.node.ubuntu 24.04", "canonical", "ubuntu-24_04-lts", "server"),
    _image("batch.node.ubuntu 22.04", "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts"),
    _image("batch.node.ubuntu 20.04", "canonical", "0001-com-ubuntu-server-focal", "20_04-lts"),
    _image("batch.node.ubuntu 18.04", "canonical", "ubuntuserver", "18.04-lts"),
    _image("batch.node.ubuntu 16.04", "canonical", "ubuntuserver", "16.04-lts"),
    _image("batch.node.debian 12", "debian", "debian-12", "12"),
    _image("batch.node.debian 11", "debian", "debian-11", "11"),
)

NODE_AGENT_SKUS: frozenset[str] = frozenset(i["nodeAgentSKUId"] for i in SUPPORTED_IMAGES)
_CUSTOM_IMAGE_KEYS = ("virtualMachineImageId", "sharedGalleryImageId", "communityGalleryImageId")
_MARKETPLACE_KEYS = ("publisher", "offer", "sku")


def supported_images() -> list[Doc]:
    """Fresh copies of the advertised images (modern ``/supportedimages`` shape)."""
    return [{**i, "imageReference": dict(i["imageReference"]), "capabilities": list(i["capabilities"])}
            for i in SUPPORTED_IMAGES]


def _agent_of(reference: Mapping[str, Any]) -> str | None:
    wanted = tuple(str(reference.get(k, "")).lower() for k in _MARKETPLACE_KEYS)
    for image in SUPPORTED_IMAGES:
        ref = image["imageReference"]
        if tuple(ref[k].lower() for k in _MARKETPLACE_KEYS) == wanted:
            return str(image["nodeAgentSKUId"])
    return None


def _known_agent(sku_id: str) -> str | None:
    for known in NODE_AGENT_SKUS:
        if known.lower() == sku_id.lower():
            return known
    return None


def check_virtual_machine_configuration(vm: Mapping[str, Any], prop: str = "virtualMachineConfiguration") -> Doc:
    """Validate a pool's ``virtualMachineConfiguration``; returns it with the agent SKU spelt canonically.

    The node agent SKU must be one this server offers; a marketplace image must be one listed
    for that SKU; custom images are refused (none is offered). Windows settings and containers are refused:
    nodes run as Linux processes on this host.
    """
    reference = models.obj(vm, "imageReference", required=True, prop=f"{prop}.imageReference")
    assert reference is not None
    sku_id = models.string(vm, "nodeAgentSKUId", required=True, prop=f"{prop}.nodeAgentSKUId")
    assert sku_id is not None
    agent = _known_agent(sku_id)
    if agent is None:
        raise models.invalid(f"{prop}.nodeAgentSKUId", sku_id,
                             "The node agent SKU is not supported. openbatch runs Linux nodes on this host; "
                             f"supported SKUs: {', '.join(sorted(NODE_AGENT_SKUS))}.")
    _check_reference(reference, agent, f"{prop}.imageReference")
    if not reference.get("version"):
        reference = {**reference, "version": "latest"}  # what Azure reports when none was asked for
    if vm.get("windowsConfiguration") is not None:
        raise models.invalid(f"{prop}.windowsConfiguration", "windowsConfiguration",
                             "Windows settings are not valid for a Linux node agent SKU.")
    if vm.get("containerConfiguration") is not None:
        _check_containers(vm, f"{prop}.containerConfiguration")
    return {**vm, "imageReference": reference, "nodeAgentSKUId": agent}


def _check_containers(vm: Mapping[str, Any], prop: str) -> None:
    """A container pool: only on a host with a container runtime (node/containers.py), never a pool
    whose container tasks would silently run on the host."""
    config = models.obj(vm, "containerConfiguration", prop=prop) or {}
    if containers.runtime() is None:
        raise models.invalid(prop, "containerConfiguration",
                             "Container pools are not supported by this openbatch server: no working container "
                             "runtime (podman or docker) was found on its host.")
    models.enum(config, "type", ("dockerCompatible", "criCompatible"), required=True, prop=f"{prop}.type")
    models.strings(config, "containerImageNames", prop=f"{prop}.containerImageNames")
    for registry in models.objects(config, "containerRegistries", prop=f"{prop}.containerRegistries") or []:
        models.string(registry, "registryServer", prop=f"{prop}.containerRegistries.registryServer")


def _check_reference(reference: Mapping[str, Any], agent: str, prop: str) -> None:
    custom = [k for k in _CUSTOM_IMAGE_KEYS if reference.get(k) not in (None, "")]
    for key in (*_CUSTOM_IMAGE_KEYS, *_MARKETPLACE_KEYS, "version"):
        models.string(reference, key, prop=f"{prop}.{key}")
    if custom:
        if any(reference.get(k) for k in _MARKETPLACE_KEYS):
            raise models.invalid(f"{prop}.{custom[0]}", reference[custom[0]],
                                 "A custom image id and publisher/offer/sku are mutually exclusive.")
        raise models.invalid(
            f"{prop}.{custom[0]}", reference[custom[0]],
            "The image is not supported: this server offers no custom images; list the supported images "
            "(/supportedimages) for the ones it offers.")
    for key in _MARKETPLACE_KEYS:
        models.string(reference, key, required=True, prop=f"{prop}.{key}")
    image_agent = _agent_of(reference)
    if image_agent is None:
        raise models.invalid(
            f"{prop}.sku", reference.get("sku"),
            f"The image {reference.get('publisher')}/{reference.get('offer')}/{reference.get('sku')} is not "
            "supported; list the supported images (/supportedimages) for the ones this server offers.")
    if image_agent != agent:
        raise models.invalid(f"{prop}.sku", reference.get("sku"),
                             f"The image is not compatible with node agent SKU '{agent}'; it needs '{image_agent}'.")
