"""The management plane (serve --arm-port) through azure-mgmt-batch, with bearer tokens from
openbatch's own issuer: an account created, its keys read and used with SharedKey on the data plane,
an application package uploaded through the SAS storageUrl and activated, a pool made through ARM
that runs tasks finding the package; ARM's errors (unknown account, bad tokens); and what the data
plane says about packages (/applications, pools and tasks naming packages that do not exist)."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import ClientSecretCredential
from azure.mgmt.batch import BatchManagementClient
from azure.storage.blob import BlobClient

from openbatch.common.identity import (
    ARM_RESOURCE,
    CONTRIBUTOR,
    DEFAULT_IDENTITY,
    IdentityService,
    add_identity,
)
from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer, free_port
from tests.helpers.waiting import wait_for

SUB = "00000000-0000-0000-0000-000000000001"
GROUP = "science"
ACCOUNT = "armacct1"


class AllowHttp(SansIOHTTPPolicy):
    """Lets the bearer policy send the token over plain http to the local server (the SDKs refuse it
    otherwise; with ``serve --https`` this is not needed)."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


class LocalCredential:
    """A TokenCredential minting tokens with the server's own issuer (same data dir), for the
    default identity unless told otherwise."""

    def __init__(self, data_dir: Path, audience: str = ARM_RESOURCE, lifetime: int = 3600, tamper: bool = False):
        self.identity = IdentityService(data_dir)
        self.audience, self.lifetime, self.tamper = audience, lifetime, tamper

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        who = self.identity.directory.by_name(DEFAULT_IDENTITY)
        assert who is not None
        token, expires = self.identity.issuer.issue(who.object_id, who.client_id, self.audience,
                                                     lifetime=self.lifetime, now=time.time())
        if self.tamper:
            head, body, sig = token.split(".")
            token = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
        return AccessToken(token, expires)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    arm_port = free_port()
    srv = LiveServer(tmp_path_factory.mktemp("arm") / "data", extra_args=["--arm-port", str(arm_port)])
    srv.arm_port = arm_port  # type: ignore[attr-defined]
    srv.start()
    yield srv
    srv.stop()


def mgmt(server: LiveServer, **credential: Any) -> Any:
    """An azure-mgmt-batch client of the server's ARM port (Any: the tests read optional fields freely)."""
    return BatchManagementClient(LocalCredential(server.data_dir, **credential), SUB,
                                 base_url=f"http://127.0.0.1:{server.arm_port}",  # type: ignore[attr-defined]
                                 per_call_policies=[AllowHttp()], polling_interval=0, retry_total=0)


def package_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("bin/hello.txt", "hello from the package")
        info = zipfile.ZipInfo("bin/run.sh")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho ran from $0\n")
    return out.getvalue()


def code(exc: HttpResponseError) -> str:
    assert exc.error is not None
    return str(exc.error.code)


def finished(client: Any, job: str, task: str) -> Any:
    return wait_for(lambda: (t := client.get_task(job, task)).state == "completed" and t, f"task {task}", 60)


def test_account_package_pool_task_end_to_end(server: LiveServer) -> None:
    arm = mgmt(server)
    account = arm.batch_account.begin_create(GROUP, ACCOUNT, {"location": "westeurope", "tags": {"t": "1"}}).result()
    assert account.name == ACCOUNT and account.properties.provisioning_state == "Succeeded"
    assert account.properties.auto_storage.storage_account_id.endswith(f"/storageAccounts/{ACCOUNT}")
    assert [a.name for a in arm.batch_account.list_by_resource_group(GROUP)] == [ACCOUNT]
    assert ACCOUNT in [a.name for a in arm.batch_account.list()]
    keys = arm.batch_account.get_keys(GROUP, ACCOUNT)
    assert keys.account_name == ACCOUNT and keys.primary and keys.secondary and keys.primary != keys.secondary

    app = arm.application.create(GROUP, ACCOUNT, "blender", {"properties": {"displayName": "Blender",
                                                                             "allowUpdates": True}})
    assert app.name == "blender" and app.properties.display_name == "Blender"
    version = arm.application_package.create(GROUP, ACCOUNT, "blender", "2.7")
    assert version.properties.state == "Pending" and version.properties.storage_url.startswith(
        f"http://127.0.0.1:{server.blob_port}/{ACCOUNT}/")
    with pytest.raises(HttpResponseError) as early:
        arm.application_package.activate(GROUP, ACCOUNT, "blender", "2.7", {"format": "zip"})
    assert code(early.value) == "ApplicationPackageBlobNotFound"
    BlobClient.from_blob_url(version.properties.storage_url).upload_blob(package_zip())
    active = arm.application_package.activate(GROUP, ACCOUNT, "blender", "2.7", {"format": "zip"})
    assert active.properties.state == "Active" and active.properties.format == "zip"
    app = arm.application.update(GROUP, ACCOUNT, "blender", {"properties": {"defaultVersion": "2.7"}})
    assert app.properties.default_version == "2.7"

    # the data plane, with the keys listKeys gave (SharedKey)
    client: Any = BatchClient(server.batch_url, AzureNamedKeyCredential(ACCOUNT, keys.primary))
    assert [(a.id, a.versions) for a in client.list_applications()] == [("blender", ["2.7"])]
    assert client.get_application("blender").display_name == "Blender"

    app_id = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Batch/batchAccounts/{ACCOUNT}" \
             f"/applications/blender"
    definition = {"properties": {
        "vmSize": "STANDARD_D2S_V3",
        "deploymentConfiguration": {"virtualMachineConfiguration": IMAGE.as_dict()},
        "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 1}},
        "applicationPackages": [{"id": app_id}]}}
    pool = arm.pool.create(GROUP, ACCOUNT, "armpool", definition)
    assert pool.name == "armpool" and pool.properties.application_packages[0].id == app_id
    assert [p.id for p in client.list_pools()] == ["armpool"]  # one pool, two views

    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="armpool")))
    client.create_task("j", bm.BatchTaskCreateOptions(
        id="uses", command_line="/bin/sh -c 'cat $AZ_BATCH_APP_PACKAGE_blender_2_7/bin/hello.txt; echo; "
                                "$AZ_BATCH_APP_PACKAGE_blender/bin/run.sh >/dev/null && echo ran; "
                                "case $AZ_BATCH_APP_PACKAGE_blender_2_7 in $AZ_BATCH_NODE_ROOT_DIR/applications/*) "
                                "echo inside;; esac'"))
    client.create_task("j", bm.BatchTaskCreateOptions(
        id="missing", command_line="/bin/true",
        application_package_references=[bm.BatchApplicationPackageReference(application_id="blender",
                                                                            version="9.9")]))
    done = finished(client, "j", "uses")
    out = b"".join(client.download_task_file("j", "uses", "stdout.txt")).decode()
    assert done.execution_info.exit_code == 0, out
    assert out == "hello from the package\nran\ninside\n"
    # ARM's PUT is create-or-update: the same definition again over the pool (which has a node now)
    # changes nothing; If-None-Match: * only creates
    again = arm.pool.create(GROUP, ACCOUNT, "armpool", definition)
    assert again.properties.scale_settings.fixed_scale.target_dedicated_nodes == 1
    with pytest.raises(HttpResponseError) as exists:
        arm.pool.create(GROUP, ACCOUNT, "armpool", definition, match_condition=MatchConditions.IfMissing)
    assert exists.value.status_code == 409 and code(exists.value) == "PoolExists"
    failed = finished(client, "j", "missing")
    assert failed.execution_info.failure_info.code == "InvalidApplicationPackageReferences"
    assert failed.execution_info.result == "failure"

    # a pool naming a package that does not exist: 409 InvalidApplicationPackageReferences
    with pytest.raises(HttpResponseError) as bad:
        client.create_pool(bm.BatchPoolCreateOptions(
            id="badpool", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
            application_package_references=[bm.BatchApplicationPackageReference(application_id="nope")]))
    assert bad.value.status_code == 409 and code(bad.value) == "InvalidApplicationPackageReferences"

    # kill -9: the account, its keys and its packages are still there
    server.kill()
    server.start()
    client = BatchClient(server.batch_url, AzureNamedKeyCredential(ACCOUNT, keys.primary))
    assert [(a.id, a.versions) for a in client.list_applications()] == [("blender", ["2.7"])]
    assert arm.batch_account.get_keys(GROUP, ACCOUNT).primary == keys.primary

    arm.pool.begin_delete(GROUP, ACCOUNT, "armpool").result()
    assert list(client.list_pools()) == []


def test_regenerated_key_replaces_the_old_one(server: LiveServer) -> None:
    arm = mgmt(server)
    arm.batch_account.begin_create(GROUP, "armkeys", {"location": "local"}).result()
    old = arm.batch_account.get_keys(GROUP, "armkeys")
    new = arm.batch_account.regenerate_key(GROUP, "armkeys", {"keyName": "Primary"})
    assert new.primary != old.primary and new.secondary == old.secondary
    assert list(BatchClient(server.batch_url, AzureNamedKeyCredential("armkeys", new.primary)).list_pools()) == []
    with pytest.raises(HttpResponseError) as refused:
        list(BatchClient(server.batch_url, AzureNamedKeyCredential("armkeys", old.primary)).list_pools())
    assert refused.value.status_code == 403
    arm.batch_account.begin_delete(GROUP, "armkeys").result()
    with pytest.raises(ResourceNotFoundError):
        arm.batch_account.get(GROUP, "armkeys")


def test_arm_errors(server: LiveServer) -> None:
    arm = mgmt(server)
    with pytest.raises(ResourceNotFoundError) as missing:
        arm.batch_account.get(GROUP, f"x{uuid.uuid4().hex[:10]}")
    assert code(missing.value) == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_app:
        arm.application.get("openbatch", "devstoreaccount1", "ghost")
    assert code(no_app.value) == "ApplicationNotFound"
    pool = {"properties": {"vmSize": "standard_d2s_v3",
                           "deploymentConfiguration": {"virtualMachineConfiguration": IMAGE.as_dict()},
                           "applicationPackages": [{"id": "ghost"}]}}
    with pytest.raises(HttpResponseError) as bad_refs:
        arm.pool.create("openbatch", "devstoreaccount1", "refs", pool)
    assert bad_refs.value.status_code == 409 and code(bad_refs.value) == "InvalidApplicationPackageReferences"
    with pytest.raises(HttpResponseError) as identity:
        arm.pool.create("openbatch", "devstoreaccount1", "ident", {**pool, "identity": {
            "type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/x/identities/y": {}}}})
    assert identity.value.status_code == 400
    with pytest.raises(HttpResponseError) as configured:
        arm.batch_account.begin_delete("openbatch", "devstoreaccount1").result()
    assert configured.value.status_code == 409
    for credential, expected in (({"tamper": True}, "InvalidAuthenticationToken"),
                             ({"audience": "https://storage.azure.com/"}, "InvalidAuthenticationTokenAudience"),
                             ({"lifetime": -3600}, "ExpiredAuthenticationToken")):
        with pytest.raises(ClientAuthenticationError) as refused:
            mgmt(server, **credential).batch_account.get("openbatch", "devstoreaccount1")
        assert refused.value.status_code == 401 and code(refused.value) == expected, credential


OPERATOR: dict[str, Any] = {"name": "operator", "clientId": "22222222-0000-0000-0000-000000000001", "objectId": "o-operator",
            "clientSecret": "operator-secret", "roles": [{"role": CONTRIBUTOR, "scope": "*"}]}
OUTSIDER: dict[str, Any] = {"name": "outsider", "clientId": "22222222-0000-0000-0000-000000000002", "objectId": "o-outsider",
            "clientSecret": "outsider-secret", "roles": []}


def test_over_https_with_client_secret_credentials(tmp_path: Path) -> None:
    """What a user's program does: HTTPS, tokens from the server's OAuth endpoint (azure-identity),
    no enforce_https workaround; an identity without Owner/Contributor gets 403 AuthorizationFailed."""
    data = tmp_path / "data"
    for entry in (OPERATOR, OUTSIDER):
        add_identity(data, entry)
    arm_port = free_port()
    server = LiveServer(data, ["--https", "--arm-port", str(arm_port)]).start()
    try:
        ca = str(data / "tls" / "ca.pem")
        tenant = IdentityService(data).directory.tenant

        def client(who: dict[str, Any]) -> Any:
            credential = ClientSecretCredential(tenant, who["clientId"], who["clientSecret"],
                                                authority=server.batch_url, disable_instance_discovery=True,
                                                connection_verify=ca)
            return BatchManagementClient(credential, SUB, base_url=f"https://127.0.0.1:{arm_port}",
                                         connection_verify=ca, polling_interval=0, retry_total=0)

        account = client(OPERATOR).batch_account.begin_create(GROUP, "httpsacct", {"location": "local"}).result()
        assert account.properties.account_endpoint == f"127.0.0.1:{server.batch_port}"
        with pytest.raises(HttpResponseError) as refused:
            client(OUTSIDER).batch_account.get_keys(GROUP, "httpsacct")
        assert refused.value.status_code == 403 and code(refused.value) == "AuthorizationFailed"
    finally:
        server.stop()
