"""Parsing what users type: JSON bodies in the REST shape, NAME=VALUE pairs, resource files, images."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from openbatch.cli.connection import CliError, as_text

if TYPE_CHECKING:
    from azure.batch import BatchClient, models
    from azure.core.polling import LROPoller

# The SDK's LRO pollers sleep ``polling_interval`` seconds between polls and type it ``int``;
# ``time.sleep`` takes any float, and an openbatch server finishes these operations in milliseconds.
FAST_POLL: Final = cast(int, 0.1)


def load_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (``-`` = stdin), in the REST shape of the resource."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a JSON object")
    return data


def key_values(pairs: list[str] | None, what: str = "NAME=VALUE") -> list[tuple[str, str]]:
    out = []
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"expected {what}, got {pair!r}")
        out.append((name, value))
    return out


def environment(pairs: list[str] | None) -> list[models.EnvironmentSetting] | None:
    from azure.batch import models

    settings = [models.EnvironmentSetting(name=n, value=v) for n, v in key_values(pairs)]
    return settings or None


def resource_files(specs: list[str] | None) -> list[models.ResourceFile] | None:
    """``URL`` or ``PATH=URL`` (as ``az batch``; PATH on the node defaults to the URL's last segment)."""
    from urllib.parse import unquote, urlsplit

    from azure.batch import models

    files = []
    for spec in specs or []:
        path, url = "", spec
        for scheme in ("=http://", "=https://"):
            if scheme in spec:
                path, _, rest = spec.partition(scheme)
                url = scheme[1:] + rest
        if not url.startswith(("http://", "https://")):
            raise CliError(f"resource file must be URL or PATH=URL, got {spec!r}")
        target = path or unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
        files.append(models.ResourceFile(http_url=url, file_path=target))
    return files or None


def admin_identity(admin: bool) -> models.UserIdentity | None:
    from azure.batch import models

    if not admin:
        return None
    return models.UserIdentity(
        auto_user=models.AutoUserSpecification(scope=models.AutoUserScope.POOL,
                                               elevation_level=models.ElevationLevel.ADMIN)
    )


def first_linux_image(client: BatchClient) -> models.BatchSupportedImage:
    """The first Linux image the server advertises (on openbatch: images that map to this host)."""
    for image in client.list_supported_images():
        if as_text(image.os_type).lower() == "linux":
            return image
    raise CliError("the server advertises no Linux image (list_supported_images is empty)")


def image_from_spec(client: BatchClient, spec: str | None, agent_sku: str | None) -> models.VirtualMachineConfiguration:
    """``publisher:offer:sku[:version]`` with ``--node-agent-sku``, or the first supported Linux image."""
    from azure.batch import models

    if not spec:
        image = first_linux_image(client)
        return models.VirtualMachineConfiguration(image_reference=image.image_reference,
                                                  node_agent_sku_id=image.node_agent_sku_id)
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise CliError(f"--image must be PUBLISHER:OFFER:SKU[:VERSION], got {spec!r}")
    reference = models.BatchVmImageReference(publisher=parts[0], offer=parts[1], sku=parts[2],
                                             version=parts[3] if len(parts) == 4 else "latest")
    if not agent_sku:
        agent_sku = _agent_sku_for(client, reference)
    return models.VirtualMachineConfiguration(image_reference=reference, node_agent_sku_id=agent_sku)


def _agent_sku_for(client: BatchClient, reference: models.BatchVmImageReference) -> str:
    for image in client.list_supported_images():
        ref = image.image_reference
        if (ref.publisher or "").lower() == (reference.publisher or "").lower() and \
                (ref.offer or "").lower() == (reference.offer or "").lower() and \
                (ref.sku or "").lower() == (reference.sku or "").lower():
            return image.node_agent_sku_id
    raise CliError("no supported image matches --image; pass --node-agent-sku or see `openbatch pool images`")


def wait_for(poller: LROPoller[Any], what: str, timeout: float) -> None:
    poller.wait(timeout)
    if not poller.done():
        raise CliError(f"timed out after {timeout:g}s waiting for {what}")


class Backoff:
    """Short, growing poll intervals: fast at first (openbatch is quick), gentle after a while."""

    def __init__(self, first: float = 0.02, cap: float = 0.5):
        self.delay = first
        self.cap = cap

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.cap, self.delay * 1.5)
