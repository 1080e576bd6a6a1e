"""Certificates through the SDK generations that have them: azure-batch 14.2.0 (2024-02-01.19.0)
and 1.0.0 (2016-07-01.3.1), each in its cached venv; certificates left the API in 2025-06-01 (15.x).

Add / list / get / delete / cancel deletion with Azure's states (active, deleting, deletefailed)
and errors; pools' certificate references checked against the account; the certificates installed
on nodes as Azure's Linux agent lays them out (``sha1-{thumbprint}.pfx`` + ``.pfx.pw``, ``.cer``)
in ``$AZ_BATCH_CERTIFICATES_DIR`` for the visibility each reference gives.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch.models._models import BatchNodeRebootOptions  # not exported by 15.1
from azure.core.credentials import AzureNamedKeyCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.helpers.batchraw import error_values, raw
from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_legacy_pools import LEGACY_PRELUDE, V14_PRELUDE, env

API = "2024-07-01.20.0"


def make_certificate(name: str, password: str) -> dict[str, str]:
    """A fresh self-signed certificate: its thumbprint, as a password-protected PFX and as a CER (DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=7)).sign(key, hashes.SHA256()))
    pfx = pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None,
                                                serialization.BestAvailableEncryption(password.encode()))
    return {"thumbprint": cert.fingerprint(hashes.SHA1()).hex(), "password": password,
            "pfx": base64.b64encode(pfx).decode(),
            "cer": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()}


@pytest.fixture(scope="module")
def certs(server: LiveServer) -> dict[str, dict[str, str]]:
    return {"a": make_certificate("openbatch-a", "pw-a"), "b": make_certificate("openbatch-b", "pw-b"),
            "c": make_certificate("openbatch-c", "pw-c")}


def _env(server: LiveServer, certs: dict[str, dict[str, str]]) -> dict[str, str]:
    return {**env(server), "OB_CERTS": json.dumps(certs)}


V14_CERTS = """
import time
CERTS = json.loads(os.environ["OB_CERTS"])
A, B, C = CERTS["a"], CERTS["b"], CERTS["c"]

def wait(check, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")

def ref(c, visibility):
    return bm.CertificateReference(thumbprint=c["thumbprint"], thumbprint_algorithm="sha1", visibility=visibility)
"""


def test_certificate_lifecycle_and_refusals_azure_batch_14(server: LiveServer,
                                                           certs: dict[str, dict[str, str]]) -> None:
    out = run_v14(server, certs, """
client.certificate.add(bm.CertificateAddParameter(thumbprint=A["thumbprint"].upper(), thumbprint_algorithm="sha1",
    data=A["pfx"], certificate_format="pfx", password=A["password"]))
client.certificate.add(bm.CertificateAddParameter(thumbprint=B["thumbprint"], thumbprint_algorithm="sha1",
    data=B["cer"], certificate_format="cer"))
got = client.certificate.get("sha1", A["thumbprint"])
listed = sorted(c.thumbprint.lower() for c in client.certificate.list())
active = [c.thumbprint for c in client.certificate.list(bm.CertificateListOptions(filter="state eq 'active'"))]
dump({
    "state": got.state, "public": got.public_data, "url": got.url, "previous": got.previous_state,
    "listed": listed, "active": len(active),
    "dup": error_of(client.certificate.add, bm.CertificateAddParameter(thumbprint=B["thumbprint"],
        thumbprint_algorithm="sha1", data=B["cer"], certificate_format="cer")),
    "wrong_thumbprint": error_of(client.certificate.add, bm.CertificateAddParameter(thumbprint=B["thumbprint"],
        thumbprint_algorithm="sha1", data=C["cer"], certificate_format="cer")),
    "wrong_password": error_of(client.certificate.add, bm.CertificateAddParameter(thumbprint=C["thumbprint"],
        thumbprint_algorithm="sha1", data=C["pfx"], certificate_format="pfx", password="nope")),
    "not_base64": error_of(client.certificate.add, bm.CertificateAddParameter(thumbprint=C["thumbprint"],
        thumbprint_algorithm="sha1", data="%%%", certificate_format="cer")),
    "md5": error_of(client.certificate.add, bm.CertificateAddParameter(thumbprint=C["thumbprint"],
        thumbprint_algorithm="md5", data=C["cer"], certificate_format="cer")),
    "cancel_active": error_of(client.certificate.cancel_deletion, "sha1", A["thumbprint"]),
    "ghost": error_of(client.certificate.get, "sha1", "00" * 20),
    "unknown_ref": error_of(client.pool.add, bm.PoolAddParameter(id="badref", vm_size="small",
        virtual_machine_configuration=JAMMY, certificate_references=[ref(C, ["task"])])),
})
""")
    assert out["state"] == "active" and out["previous"] is None
    assert out["public"] == certs["a"]["cer"]  # the certificate, DER, base64: what the PFX holds
    assert out["url"].endswith(f"/certificates(thumbprintAlgorithm=sha1,thumbprint={certs['a']['thumbprint'].upper()})")
    assert out["listed"] == sorted([certs["a"]["thumbprint"], certs["b"]["thumbprint"]]) and out["active"] == 2
    assert (out["dup"]["status"], out["dup"]["code"]) == (409, "CertificateExists")
    for case in ("wrong_thumbprint", "wrong_password", "not_base64", "md5"):
        assert (out[case]["status"], out[case]["code"]) == (400, "InvalidPropertyValue"), case
    assert out["wrong_thumbprint"]["values"]["PropertyName"] == "thumbprint"
    assert out["wrong_password"]["values"]["PropertyName"] == "password"
    assert (out["cancel_active"]["status"], out["cancel_active"]["code"]) == (409, "CertificateStateActive")
    assert (out["ghost"]["status"], out["ghost"]["code"]) == (404, "CertificateNotFound")
    assert (out["unknown_ref"]["status"], out["unknown_ref"]["code"]) == (400, "InvalidCertificateReferences")


def test_certificates_installed_on_nodes_by_visibility_azure_batch_14(server: LiveServer,
                                                                      certs: dict[str, dict[str, str]]) -> None:
    """The pool's references are installed when its nodes boot: the PFX for the start task and tasks,
    the CER for tasks only; a certificate in use cannot be deleted (deletefailed, the pool named) and
    a cancelled deletion is active again."""
    out = run_v14(server, certs, """
for c, fmt in ((A, "pfx"), (B, "cer")):
    if fmt == "pfx":
        param = bm.CertificateAddParameter(thumbprint=c["thumbprint"], thumbprint_algorithm="sha1", data=c["pfx"],
                                           certificate_format="pfx", password=c["password"])
    else:
        param = bm.CertificateAddParameter(thumbprint=c["thumbprint"], thumbprint_algorithm="sha1", data=c["cer"],
                                           certificate_format="cer")
    error_of(client.certificate.add, param)  # the previous test may have added them
listing = "/bin/sh -c 'echo $AZ_BATCH_CERTIFICATES_DIR; ls $AZ_BATCH_CERTIFICATES_DIR; cat $AZ_BATCH_CERTIFICATES_DIR/*.pw'"
client.pool.add(bm.PoolAddParameter(id="certpool", vm_size="small", virtual_machine_configuration=JAMMY,
    target_dedicated_nodes=1, certificate_references=[ref(A, ["startTask", "task"]), ref(B, ["task"])],
    start_task=bm.StartTask(command_line="/bin/sh -c 'ls $AZ_BATCH_CERTIFICATES_DIR > $AZ_BATCH_NODE_SHARED_DIR/st'",
                            wait_for_success=True)))
node = wait(lambda: [n for n in client.compute_node.list("certpool") if n.state == "idle"])[0]
client.job.add(bm.JobAddParameter(id="certjob", pool_info=bm.PoolInformation(pool_id="certpool")))
client.task.add("certjob", bm.TaskAddParameter(id="show", command_line=listing))
wait(lambda: client.task.get("certjob", "show").state == "completed")
stdout = b"".join(client.file.get_from_task("certjob", "show", "stdout.txt")).decode()
start = b"".join(client.file.get_from_compute_node("certpool", node.id, "shared/st")).decode()
refs = [(r.thumbprint, [getattr(v, "value", v) for v in r.visibility]) for r in client.compute_node.get("certpool", node.id).certificate_references]
client.certificate.delete("sha1", A["thumbprint"])
right_after = client.certificate.get("sha1", A["thumbprint"]).state
failed = wait(lambda: [c for c in [client.certificate.get("sha1", A["thumbprint"])] if c.state == "deletefailed"])[0]
err = failed.delete_certificate_error
client.certificate.cancel_deletion("sha1", A["thumbprint"])
dump({"stdout": stdout, "start": start, "refs": refs, "right_after": right_after, "previous": failed.previous_state,
      "error": {"code": err.code, "values": [[v.name, v.value] for v in err.values]},
      "cancelled": client.certificate.get("sha1", A["thumbprint"]).state,
      "task_exit": client.task.get("certjob", "show").execution_info.exit_code})
""")
    a, b = certs["a"]["thumbprint"], certs["b"]["thumbprint"]
    lines = out["stdout"].splitlines()
    assert out["task_exit"] == 0 and lines[0].endswith("/certs/task")
    assert lines[1:4] == sorted([f"sha1-{a}.pfx", f"sha1-{a}.pfx.pw", f"sha1-{b}.cer"]) and lines[4] == "pw-a"
    assert out["start"].split() == [f"sha1-{a}.pfx", f"sha1-{a}.pfx.pw"]
    assert sorted(out["refs"]) == sorted([[a, ["starttask", "task"]], [b, ["task"]]])  # the spec's spelling
    assert out["right_after"] == "deleting" and out["previous"] == "deleting"
    assert out["error"] == {"code": "PoolsReferencingCertificate", "values": [["Pools", "certpool"]]}
    assert out["cancelled"] == "active"


def test_a_certificate_stays_in_use_until_its_nodes_restart(client: BatchClient, server: LiveServer,
                                                            certs: dict[str, dict[str, str]]) -> None:
    """Taking a certificate off a pool does not take it off the pool's nodes until they reboot (Azure)."""
    c = certs["c"]
    one = f"/certificates(thumbprintAlgorithm=sha1,thumbprint={c['thumbprint']})"
    body = {"thumbprint": c["thumbprint"], "thumbprintAlgorithm": "sha1", "data": c["cer"], "certificateFormat": "cer"}
    assert raw(client, "POST", "/certificates", json.dumps(body).encode(), api=API)[0] == 201
    pool = {"id": "usedpool", "vmSize": "small", "targetDedicatedNodes": 1,
            "virtualMachineConfiguration": {"imageReference": {"publisher": "debian", "offer": "debian-12",
                                                               "sku": "12"}, "nodeAgentSKUId": "batch.node.debian 12"},
            "certificateReferences": [{"thumbprint": c["thumbprint"], "thumbprintAlgorithm": "sha1"}]}
    assert raw(client, "POST", "/pools", json.dumps(pool).encode(), api=API)[0] == 201
    node = wait_for(lambda: [n for n in client.list_nodes("usedpool") if n.state == "idle"], "the node", 30)[0]
    status, _, _ = raw(client, "PATCH", "/pools/usedpool", b'{"certificateReferences": []}', api=API)
    assert status == 200
    assert raw(client, "DELETE", one, api=API)[0] == 202
    status, doc, _ = raw(client, "DELETE", one, api=API)
    assert (status, doc.get("code")) == (409, "CertificateBeingDeleted")
    failed = wait_for(lambda: (d := raw(client, "GET", one, api=API)[1]).get("state") == "deletefailed" and d,
                      "deletefailed", 30)
    assert failed["deleteCertificateError"]["values"] == [{"name": "Pools", "value": "usedpool"}]
    client.begin_reboot_node("usedpool", node.id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                             polling_interval=0).result(timeout=30)
    assert raw(client, "DELETE", one, api=API)[0] == 202  # a retry from deletefailed
    wait_for(lambda: raw(client, "GET", one, api=API)[0] == 404, "the certificate to go", 30)
    status, doc, _ = raw(client, "GET", one, api=API)
    assert doc["code"] == "CertificateNotFound" and error_values(doc)["Thumbprint"] == c["thumbprint"]
    status, doc, _ = raw(client, "PATCH", "/pools/usedpool", json.dumps(
        {"certificateReferences": pool["certificateReferences"]}).encode(), api=API)
    assert (status, doc["code"]) == (400, "InvalidCertificateReferences")


def test_certificates_azure_batch_1(server: LiveServer, certs: dict[str, dict[str, str]]) -> None:
    out = run_legacy(server, certs, """
CERTS = json.loads(os.environ["OB_CERTS"])
C = CERTS["c"]
client.certificate.add(bm.CertificateAddParameter(thumbprint=C["thumbprint"], thumbprint_algorithm="sha1",
    data=C["pfx"], certificate_format="pfx", password=C["password"]))
got = client.certificate.get("sha1", C["thumbprint"])
listed = [c.thumbprint for c in client.certificate.list()]
client.certificate.delete("sha1", C["thumbprint"])
after = client.certificate.get("sha1", C["thumbprint"]).state
import time
for _ in range(100):
    gone = error_of(client.certificate.get, "sha1", C["thumbprint"])
    if gone:
        break
    time.sleep(0.1)
dump({"state": got.state, "listed": C["thumbprint"] in listed, "after": after, "gone": gone})
""")
    assert out["state"] == "active" and out["listed"] and out["after"] == "deleting"
    assert (out["gone"]["status"], out["gone"]["code"]) == (404, "CertificateNotFound")


def run_v14(server: LiveServer, certs: dict[str, dict[str, str]], body: str) -> Any:
    return run_script("batch14", V14_PRELUDE + V14_CERTS + body, _env(server, certs))


def run_legacy(server: LiveServer, certs: dict[str, dict[str, str]], body: str) -> Any:
    return run_script("legacy", LEGACY_PRELUDE + body, _env(server, certs))


def test_certificates_survive_kill_9_and_a_deletion_goes_on(fresh_server: LiveServer,
                                                            certs: dict[str, dict[str, str]]) -> None:
    """Acknowledged certificates are durable; a deletion under way when the server dies ends after it."""
    def client_of(server: LiveServer) -> BatchClient:
        return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))

    client = client_of(fresh_server)
    for name in ("a", "b"):
        body = {"thumbprint": certs[name]["thumbprint"], "thumbprintAlgorithm": "sha1", "data": certs[name]["cer"],
                "certificateFormat": "cer"}
        assert raw(client, "POST", "/certificates", json.dumps(body).encode(), api=API)[0] == 201
    doomed = f"/certificates(thumbprintAlgorithm=sha1,thumbprint={certs['b']['thumbprint']})"
    assert raw(client, "DELETE", doomed, api=API)[0] == 202
    client.close()
    fresh_server.kill()
    fresh_server.start()
    client = client_of(fresh_server)
    try:
        kept = raw(client, "GET", f"/certificates(thumbprintAlgorithm=sha1,thumbprint={certs['a']['thumbprint']})",
                   api=API)[1]
        assert kept["state"] == "active" and kept["publicData"] == certs["a"]["cer"]
        wait_for(lambda: raw(client, "GET", doomed, api=API)[0] == 404, "the deletion to end after the restart", 30)
    finally:
        client.close()
