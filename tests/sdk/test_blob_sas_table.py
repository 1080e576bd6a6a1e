"""Every SAS permission letter against every Blob operation openbatch serves, for an account SAS,
a container SAS and a blob SAS, through raw HTTP against a live server.

The expected letters are Azure's, written out here independently of the server's own table:
"Create an account SAS" (Blob service operations table) and "Create a service SAS" (a service SAS
cannot read or write container properties, metadata or ACLs, nor create or delete containers;
create (c) writes a *new* blob only, overwriting takes write (w); Put Block and Put Block List take
write). A kind of SAS that can never authorize an operation is answered 403 AuthorizationFailure
(as Azure answers Get Container Properties with a container SAS); a SAS without the letter 403
AuthorizationPermissionMismatch.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from openbatch.blob import wire
from openbatch.common import sas
from openbatch.config import parse_account
from tests.blob.raw import RawResponse, request
from tests.helpers.server import LiveServer

ACCOUNT_LETTERS = "rwdxylacuptfi"  # every letter an account SAS may carry
SERVICE_LETTERS = "racwdxyltfmeiop"  # every letter a blob service SAS may carry
BLOCK = base64.b64encode(b"block-0").decode()
BLOCK_LIST = f'<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>{BLOCK}</Latest></BlockList>'.encode()
EMPTY_ACL = b'<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers />'


@dataclass(frozen=True)
class Target:
    server: LiveServer
    container: str
    blob: str
    token: str  # the SAS query string under test

    def call(self, method: str, path: str, query: str = "", body: bytes = b"",
             headers: dict[str, str] | None = None) -> RawResponse:
        full = f"{query}&{self.token}" if query else self.token
        return request(self.server, method, path, query=full, body=body, headers=headers, sign=False)

    @property
    def c(self) -> str:
        return f"/{self.container}"

    @property
    def b(self) -> str:
        return f"/{self.container}/{self.blob}"


def _copy_source(t: Target) -> str:
    account = parse_account(f"{t.server.account}:{t.server.key}")
    read = sas.generate_blob_sas(account, t.container, "source", "r", datetime.now(UTC) + timedelta(hours=1))
    return f"http://127.0.0.1:{t.server.blob_port}/{t.server.account}/{t.container}/source?{read}"


_ACQUIRE = {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1"}
_TAGS = b'<?xml version="1.0" encoding="utf-8"?><Tags><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tags>'
_WHERE = quote("\"k\" = 'v'", safe="")


def _break(t: Target, path: str, query: str) -> RawResponse:
    """Break a lease acquired with the account key."""
    assert request(t.server, "PUT", path, query=query, headers=_ACQUIRE).status == 201
    return t.call("PUT", path, query, headers={"x-ms-lease-action": "break"})


def _put_blob(t: Target) -> RawResponse:
    return t.call("PUT", t.b, body=b"new content", headers={"x-ms-blob-type": "BlockBlob"})


def _copy(t: Target) -> RawResponse:
    return t.call("PUT", t.b, headers={"x-ms-copy-source": _copy_source(t)})


def _put_block_list(t: Target) -> RawResponse:
    return t.call("PUT", t.b, "comp=blocklist", body=BLOCK_LIST)


@dataclass(frozen=True)
class Op:
    """One operation: Azure's letters for an account SAS and for a service SAS (None: never)."""

    name: str
    level: str  # "service" | "container" | "blob"
    account: str | None
    service: str | None
    success: int
    call: Callable[[Target], RawResponse]
    setup: str = ""  # "c": the container exists; "b": and the blob; "s": and a staged block only


OPS = [
    Op("list_containers", "service", "l", None, 200, lambda t: t.call("GET", "", "comp=list")),
    Op("get_service_properties", "service", "r", None, 200,
       lambda t: t.call("GET", "", "restype=service&comp=properties")),
    Op("set_service_properties", "service", "w", None, 202,
       lambda t: t.call("PUT", "", "restype=service&comp=properties", wire.DEFAULT_SERVICE_PROPERTIES.encode())),
    Op("create_container", "container", "cw", None, 201, lambda t: t.call("PUT", t.c, "restype=container")),
    Op("get_container_properties", "container", "r", None, 200,
       lambda t: t.call("GET", t.c, "restype=container"), "c"),
    Op("get_container_metadata", "container", "r", None, 200,
       lambda t: t.call("GET", t.c, "restype=container&comp=metadata"), "c"),
    Op("set_container_metadata", "container", "w", None, 200,
       lambda t: t.call("PUT", t.c, "restype=container&comp=metadata", headers={"x-ms-meta-k": "v"}), "c"),
    Op("get_container_acl", "container", None, None, 200, lambda t: t.call("GET", t.c, "restype=container&comp=acl"),
       "c"),
    Op("set_container_acl", "container", None, None, 200,
       lambda t: t.call("PUT", t.c, "restype=container&comp=acl", EMPTY_ACL), "c"),
    Op("delete_container", "container", "d", None, 202, lambda t: t.call("DELETE", t.c, "restype=container"), "c"),
    Op("list_blobs", "container", "l", "l", 200, lambda t: t.call("GET", t.c, "restype=container&comp=list"), "c"),
    Op("put_blob_new", "blob", "cw", "cw", 201, _put_blob, "c"),
    Op("put_blob_existing", "blob", "w", "w", 201, _put_blob, "b"),
    Op("copy_blob_new", "blob", "cw", "cw", 202, _copy, "c"),
    Op("copy_blob_existing", "blob", "w", "w", 202, _copy, "b"),
    Op("put_block", "blob", "w", "w", 201,
       lambda t: t.call("PUT", t.b, f"comp=block&blockid={quote(BLOCK, safe='')}", b"block"), "c"),
    Op("put_block_list_new", "blob", "w", "w", 201, _put_block_list, "s"),
    Op("put_block_list_existing", "blob", "w", "w", 201, _put_block_list, "bs"),
    Op("get_block_list", "blob", "r", "r", 200, lambda t: t.call("GET", t.b, "comp=blocklist"), "b"),
    Op("get_blob", "blob", "r", "r", 200, lambda t: t.call("GET", t.b), "b"),
    Op("get_blob_properties", "blob", "r", "r", 200, lambda t: t.call("HEAD", t.b), "b"),
    Op("get_blob_metadata", "blob", "r", "r", 200, lambda t: t.call("GET", t.b, "comp=metadata"), "b"),
    Op("set_blob_properties", "blob", "w", "w", 200,
       lambda t: t.call("PUT", t.b, "comp=properties", headers={"x-ms-blob-content-type": "text/plain"}), "b"),
    Op("set_blob_metadata", "blob", "w", "w", 200,
       lambda t: t.call("PUT", t.b, "comp=metadata", headers={"x-ms-meta-k": "v"}), "b"),
    Op("set_blob_tier", "blob", "w", "w", 200,
       lambda t: t.call("PUT", t.b, "comp=tier", headers={"x-ms-access-tier": "Hot"}), "b"),
    Op("delete_blob", "blob", "d", "d", 202, lambda t: t.call("DELETE", t.b), "b"),
    Op("lease_blob", "blob", "w", "w", 201, lambda t: t.call("PUT", t.b, "comp=lease", headers=_ACQUIRE), "b"),
    # delete may break a lease (2017-07-29 and later)
    Op("break_lease_blob", "blob", "wd", "wd", 202, lambda t: _break(t, t.b, "comp=lease"), "b"),
    Op("lease_container", "container", "w", None, 201,
       lambda t: t.call("PUT", t.c, "restype=container&comp=lease", headers=_ACQUIRE), "c"),
    Op("break_lease_container", "container", "wd", None, 202,
       lambda t: _break(t, t.c, "restype=container&comp=lease"), "c"),
    Op("get_blob_tags", "blob", "t", "t", 200, lambda t: t.call("GET", t.b, "comp=tags"), "b"),
    Op("set_blob_tags", "blob", "t", "t", 204, lambda t: t.call("PUT", t.b, "comp=tags", _TAGS), "b"),
    Op("find_blobs_by_tags", "service", "f", None, 200, lambda t: t.call("GET", "", f"comp=blobs&where={_WHERE}")),
    Op("find_blobs_by_tags_in_container", "container", "f", "f", 200,
       lambda t: t.call("GET", t.c, f"restype=container&comp=blobs&where={_WHERE}"), "c"),
    Op("get_service_stats", "service", "r", None, 200, lambda t: t.call("GET", "", "restype=service&comp=stats")),
    # Azure's tables name no letter for Undelete Blob: Azurite's write
    Op("undelete_blob", "blob", "w", "w", 200, lambda t: t.call("PUT", t.b, "comp=undelete"), "b"),
    # Not in Azure's tables; Azurite's (any of these letters) -- Azure answers even a write-only SAS.
    Op("get_account_info", "blob", "racwdlup", "racwdl", 200,
       lambda t: t.call("GET", t.b, "restype=account&comp=properties"), "b"),
]

KINDS = {"account": ("service", "container", "blob"), "container": ("container", "blob"), "blob": ("blob",)}
CASES = [(kind, op) for kind, levels in KINDS.items() for op in OPS if op.level in levels]


def _prepare_container(server: LiveServer, op: Op) -> str:
    container = f"t{uuid.uuid4().hex[:12]}"
    if op.setup:
        assert request(server, "PUT", f"/{container}", query="restype=container").status == 201
    if op.name.startswith("copy_blob"):
        assert request(server, "PUT", f"/{container}/source", body=b"copied",
                       headers={"x-ms-blob-type": "BlockBlob"}).status == 201
    return container


def _prepare_blob(server: LiveServer, op: Op, container: str) -> str:
    blob = f"b{uuid.uuid4().hex[:12]}"
    if "b" in op.setup:
        assert request(server, "PUT", f"/{container}/{blob}", body=b"old content",
                       headers={"x-ms-blob-type": "BlockBlob"}).status == 201
    if "s" in op.setup:
        assert request(server, "PUT", f"/{container}/{blob}", query=f"comp=block&blockid={quote(BLOCK, safe='')}",
                       body=b"block").status == 201
    return blob


def _token(server: LiveServer, kind: str, container: str, blob: str, letter: str) -> str:
    account = parse_account(f"{server.account}:{server.key}")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    if kind == "account":
        return sas.generate_account_sas(account, "sco", letter, expiry)
    if kind == "container":
        return sas.generate_container_sas(account, container, letter, expiry)
    return sas.generate_blob_sas(account, container, blob, letter, expiry)


def _expected(op: Op, kind: str, letter: str) -> tuple[int, str | None]:
    needed = op.account if kind == "account" else op.service
    if needed is None:
        return 403, "AuthorizationFailure"
    if letter in needed:
        return op.success, None
    return 403, "AuthorizationPermissionMismatch"


@pytest.mark.parametrize(("kind", "op"), CASES, ids=[f"{kind}-{op.name}" for kind, op in CASES])
def test_each_sas_letter_authorizes_what_azure_allows(server: LiveServer, kind: str, op: Op) -> None:
    letters = ACCOUNT_LETTERS if kind == "account" else SERVICE_LETTERS
    got: dict[str, tuple[int, str | None]] = {}
    container = _prepare_container(server, op)
    for letter in letters:
        if op.level != "blob":  # a container operation may consume its container
            container = _prepare_container(server, op)
        blob = _prepare_blob(server, op, container)
        resp = op.call(Target(server, container, blob, _token(server, kind, container, blob, letter)))
        got[letter] = (resp.status, resp.code)
    assert got == {letter: _expected(op, kind, letter) for letter in letters}


@pytest.mark.parametrize("kind", KINDS)
def test_create_only_sas_cannot_overwrite(server: LiveServer, kind: str) -> None:
    """Put Blob, Copy Blob and Put Block List onto an existing blob with 'c' (no 'w') change nothing."""
    for op in (o for o in OPS if o.name.endswith("_existing")):
        container = _prepare_container(server, op)
        blob = _prepare_blob(server, op, container)
        resp = op.call(Target(server, container, blob, _token(server, kind, container, blob, "c")))
        assert (op.name, resp.status, resp.code) == (op.name, 403, "AuthorizationPermissionMismatch")
        assert request(server, "GET", f"/{container}/{blob}").body == b"old content"
