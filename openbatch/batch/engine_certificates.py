"""The engine's certificate side: what a booting node installs, and how a deletion ends.

A node installs its pool's certificate references when it boots (and again after a reboot or a
reimage), and its document records them (``certificateReferences``, as Azure's ComputeNode does):
that is what keeps a certificate in use after it was taken off the pool, until the node restarts.
A certificate being deleted stays in ``deleting`` for the deletion's passage, then goes - or
moves to ``deletefailed`` when a pool or a node still uses it (``domain/certificates.py``).
"""

from __future__ import annotations

import base64
import logging

from openbatch.batch.domain import certificates as certs
from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain.common import now_iso
from openbatch.batch.domain.states import CertificateState
from openbatch.batch.engine_core import Doc, EngineCore
from openbatch.batch.store import BatchStore
from openbatch.node.certs import NodeCertificate

log = logging.getLogger("openbatch.engine")


def node_certificates(store: BatchStore, account: str, pool: Doc) -> tuple[list[Doc], list[NodeCertificate]]:
    """The pool's certificate references (as a booting node records them) and the files they install.
    A reference to a certificate that went meanwhile installs nothing (pools cannot name one that is
    not active, and one in use cannot go)."""
    refs, out = [], []
    for ref in pool.get("certificateReferences") or []:
        algorithm, thumbprint = str(ref.get("thumbprintAlgorithm", "")), str(ref.get("thumbprint", ""))
        cert = store.get(certs.KIND, account, certs.key_of(algorithm, thumbprint))
        if cert is None:
            continue
        refs.append(dict(ref))
        out.append(NodeCertificate(
            thumbprint_algorithm=algorithm, thumbprint=thumbprint, certificate_format=str(cert["_format"]),
            data=base64.b64decode(cert["_data"]), password=cert.get("_password"),
            visibility=tuple(str(v).lower() for v in ref.get("visibility") or certs.VISIBILITIES)))
    return refs, out


class EngineCertificates(EngineCore):
    """Certificates (mixed into Engine)."""

    def finish_certificate_deletion(self, account: str, instruction: ins.FinishCertificateDeletion) -> None:
        self.spawn(self._finish_deletion(account, instruction), f"delete certificate {instruction.thumbprint}")

    async def _finish_deletion(self, account: str, instruction: ins.FinishCertificateDeletion) -> None:
        key = certs.key_of(instruction.thumbprint_algorithm, instruction.thumbprint)
        doc = self.store.get(certs.KIND, account, key)
        if doc is None:
            return
        await self.deletion_passage(str(doc["stateTransitionTime"]))
        doc = self.store.get(certs.KIND, account, key)
        if doc is None or doc.get("state") != CertificateState.DELETING.value:
            return
        users = certs.users(key, self.store.all("pool", account), lambda pool_id: self.store.all("node", account, pool_id))
        if certs.finish_deletion(doc, users, now_iso()):
            self.store.delete(certs.KIND, account, key)
        else:
            self.store.put(certs.KIND, account, doc, key=key)
        self.kick()

    def resume_certificate_deletions(self) -> None:
        """After a restart: deletions that were under way go on."""
        for account, _, doc in list(self.store.every(certs.KIND)):
            if doc.get("state") == CertificateState.DELETING.value:
                self.finish_certificate_deletion(account, ins.FinishCertificateDeletion(
                    thumbprint_algorithm=str(doc["thumbprintAlgorithm"]), thumbprint=str(doc["thumbprint"])))
