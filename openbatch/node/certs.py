"""Certificates on a node, as Azure's Linux node agent lays them out.

A pool's certificate references are installed when a node boots (and again when it reboots or
is reimaged: nodes refresh their certificates only then, as on Azure). Each certificate is a file
named ``{thumbprintAlgorithm}-{lowercase thumbprint}.{format}`` - a ``.pfx`` as it was uploaded
with its password beside it in ``.pfx.pw``, or a ``.cer`` - in the directory of each visibility
it was given::

    {node root}/certs/starttask/   the start task's AZ_BATCH_CERTIFICATES_DIR
    {node root}/certs/task/        every other task's (job manager, preparation, release, tasks)

(``remoteuser`` certificates go to remote users' home directories on Azure; nodes here have no
remote users, so there is nothing to install for them.) The tree belongs to the server: it is
rebuilt whole at each boot, from a descriptor of the node root, never following a link; tasks
can read it (their group when the server runs as root), not change it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from openbatch.node import safefs
from openbatch.node.layout import CERTS, NodeLayout
from openbatch.node.safefs import Owner

VISIBILITY_DIRS = ("starttask", "task")


@dataclass(frozen=True)
class NodeCertificate:
    """One certificate to install: what the pool's reference and the account's certificate say."""

    thumbprint_algorithm: str
    thumbprint: str
    certificate_format: str  # pfx | cer
    data: bytes
    password: str | None
    visibility: tuple[str, ...]

    @property
    def stem(self) -> str:
        return f"{self.thumbprint_algorithm.lower()}-{self.thumbprint.lower()}"

    def files(self) -> list[tuple[str, bytes]]:
        """(name, content) of the files this certificate is on a node."""
        if self.certificate_format == "cer":
            return [(f"{self.stem}.cer", self.data)]
        return [(f"{self.stem}.pfx", self.data), (f"{self.stem}.pfx.pw", (self.password or "").encode())]


def install_certificates(layout: NodeLayout, certificates: Sequence[NodeCertificate], group: int | None) -> None:
    """Replace the node's ``certs/`` tree with ``certificates`` (an empty directory per visibility
    when there are none). ``group``: the task accounts' group, given when the server runs as root."""
    owner = Owner(0, group) if group is not None else None
    with safefs.closing(safefs.open_dir(layout.root)) as root:
        safefs.remove(root, CERTS)
        with safefs.closing(safefs.walk(root, [CERTS], create=True, mode=0o755)) as certs:
            for visibility in VISIBILITY_DIRS:
                with safefs.closing(safefs.walk(certs, [visibility], create=True, owner=owner, mode=0o750)) as where:
                    for certificate in certificates:
                        if visibility in certificate.visibility:
                            _write_files(where, certificate, owner)


def _write_files(dir_fd: int, certificate: NodeCertificate, owner: Owner | None) -> None:
    for name, content in certificate.files():
        fd = safefs.create_file(dir_fd, name, owner, mode=0o640, exclusive=True)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
