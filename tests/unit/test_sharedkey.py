"""The server's SharedKey candidates contain exactly the string the official SDK policies sign.

Requests are built by hand (or with the SDK's own request builders), signed by the SDK's
policy (azure-storage-blob 12's SharedKeyCredentialPolicy, azure-batch 15's
BatchSharedKeyAuthPolicy, and the legacy azure-storage 0.33 signer in its venv), and the
string each policy signed is captured.  The server's view of the same request (lower-case
header names, the path as sent, decoded query pairs) must produce that string.
No network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from azure.batch._operations import _operations as batch_ops
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from requests.utils import requote_uri

from openbatch.common import sharedkey
from openbatch.config import DEV_ACCOUNT, DEV_KEY, accounts_from
from tests.helpers.venvs import run_script

ACCOUNT = accounts_from(None, None)[DEV_ACCOUNT]
BLOB = f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
BATCH = "http://127.0.0.1:10100"
DATE = "Tue, 07 May 2024 10:00:00 GMT"

Candidates = Callable[[str, dict[str, str], str, str, list[tuple[str, str]]], Iterator[str]]


def _server_view(
    request: HttpRequest, content_length: str | None
) -> tuple[str, dict[str, str], str, list[tuple[str, str]]]:
    """What the server sees: the wire URL split into raw path and decoded query, lower-case headers.

    ``content_length`` is the Content-Length header as the transport sent it (None: not sent).
    """
    url = urlsplit(requote_uri(request.url))
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "content-length"}
    if content_length is not None:
        headers["content-length"] = content_length
    return request.method, headers, url.path, parse_qsl(url.query, keep_blank_values=True)


def _assert_signed_string_is_candidate(
    signed: str, request: HttpRequest, content_length: str | None, candidates: Candidates
) -> None:
    method, headers, path, query = _server_view(request, content_length)
    strings = list(candidates(method, headers, ACCOUNT.name, path, query))
    assert signed in strings, f"SDK signed:\n{signed!r}\nserver candidates:\n" + "\n".join(map(repr, strings))
    parsed = sharedkey.parse_authorization(request.headers["Authorization"])
    assert parsed is not None and parsed[:2] == ("SharedKey", ACCOUNT.name)
    assert sharedkey.matches(ACCOUNT, parsed[2], strings)


# --- Blob: azure-storage-blob 12 ------------------------------------------------------------------


def _blob_sign(request: HttpRequest) -> str:
    """Sign ``request`` with the SDK policy; return the string it signed."""
    policy = SharedKeyCredentialPolicy(ACCOUNT.name, DEV_KEY)
    captured: list[str] = []
    original = policy._add_authorization_header

    def capture(req: PipelineRequest[HttpRequest], string_to_sign: str) -> None:
        captured.append(string_to_sign)
        original(req, string_to_sign)

    policy._add_authorization_header = capture  # type: ignore[method-assign]
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    assert len(captured) == 1
    return captured[0]


def _blob_headers(**extra: str) -> dict[str, str]:
    return {"x-ms-version": "2026-10-06", "x-ms-date": DATE, "x-ms-client-request-id": "0f1e", **extra}


META = {
    "x-ms-meta-my-key": "hyphen",
    "x-ms-meta-my_key": "underscore",
    "x-ms-meta-mykey": "plain",
    "x-ms-meta-MyKey2": "Upper Case",
    "x-ms-meta-a_b": "1",
    "x-ms-meta-a-b": "2",
    "x-ms-meta-ab": "3",
    "x-ms-meta-a1": "4",
    "x-ms-meta-_z": "5",
    "x-ms-meta-z": "6",
}


def test_blob_put_with_metadata_hyphens_and_underscores() -> None:
    headers = _blob_headers(
        **META,
        **{
            "x-ms-blob-type": "BlockBlob",
            "Content-Type": "text/plain; charset=utf-8",
            "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg==",
        },
    )
    request = HttpRequest("PUT", f"{BLOB}/inputs/data.txt", headers=headers, content=b"hello world")
    signed = _blob_sign(request)
    assert "x-ms-meta-my-key:hyphen\n" in signed and "x-ms-meta-my_key:underscore\n" in signed
    _assert_signed_string_is_candidate(signed, request, "11", sharedkey.blob_candidates)


def test_blob_metadata_order_is_the_sdk_collation_not_code_points() -> None:
    request = HttpRequest("PUT", f"{BLOB}/c?restype=container", headers=_blob_headers(**META))
    signed = _blob_sign(request)
    names = [line.split(":")[0] for line in signed.splitlines() if line.startswith("x-ms-meta-")]
    assert names != sorted(names), "the case should exercise the collated order"
    _assert_signed_string_is_candidate(signed, request, "0", sharedkey.blob_candidates)


def test_blob_list_with_several_query_parameters() -> None:
    url = (
        f"{BLOB}/inputs?restype=container&comp=list&prefix=dir%2Fsub%20x&marker=2%21abc&maxresults=10"
        "&include=metadata%2Cuncommittedblobs&delimiter=%2F&timeout=30"
    )
    request = HttpRequest("GET", url, headers=_blob_headers())
    signed = _blob_sign(request)
    assert "\nprefix:dir/sub x" in signed and "\ninclude:metadata,uncommittedblobs" in signed
    _assert_signed_string_is_candidate(signed, request, None, sharedkey.blob_candidates)


@pytest.mark.parametrize(
    "escaped_name",
    ["dir/a%20b%2Bc%25d%20%C3%BC.txt", "%C3%A9t%C3%A9/%E2%9C%93%20(1).bin", "a%3Fb%23c%26d%3De.txt"],
)
def test_blob_escaped_paths(escaped_name: str) -> None:
    request = HttpRequest(
        "GET", f"{BLOB}/inputs/{escaped_name}", headers=_blob_headers(**{"x-ms-range": "bytes=0-99"})
    )
    signed = _blob_sign(request)
    assert f"/{ACCOUNT.name}/{ACCOUNT.name}/inputs/{escaped_name}" in signed
    _assert_signed_string_is_candidate(signed, request, None, sharedkey.blob_candidates)


@pytest.mark.parametrize("header", ["0", None], ids=["header-0", "no-header"])
@pytest.mark.parametrize("sent", ["0", None], ids=["sent-0", "sent-none"])
def test_blob_empty_versus_zero_content_length(header: str | None, sent: str | None) -> None:
    headers = _blob_headers(**({"Content-Length": header} if header is not None else {}))
    request = HttpRequest("PUT", f"{BLOB}/newcontainer?restype=container", headers=headers)
    signed = _blob_sign(request)
    assert signed.startswith("PUT\n\n\n\n")  # "0" is signed as the empty string
    _assert_signed_string_is_candidate(signed, request, sent, sharedkey.blob_candidates)


def test_blob_conditional_headers_are_signed() -> None:
    headers = _blob_headers(
        **{
            "If-Match": '"0x8DC6E5A1B2C3D4E"',
            "If-None-Match": "*",
            "If-Modified-Since": DATE,
            "If-Unmodified-Since": DATE,
        }
    )
    request = HttpRequest("HEAD", f"{BLOB}/inputs/x", headers=headers)
    signed = _blob_sign(request)
    _assert_signed_string_is_candidate(signed, request, None, sharedkey.blob_candidates)


def test_blob_tampered_request_is_not_a_candidate() -> None:
    """The check above can fail: a header changed after signing is not among the candidates."""
    request = HttpRequest("PUT", f"{BLOB}/inputs/x", headers=_blob_headers(**META), content=b"abc")
    signed = _blob_sign(request)
    request.headers["x-ms-meta-my-key"] = "changed"
    method, headers, path, query = _server_view(request, "3")
    assert signed not in list(sharedkey.blob_candidates(method, headers, ACCOUNT.name, path, query))


# --- Batch: azure-batch 15 ------------------------------------------------------------------------


def _batch_sign(request: HttpRequest) -> str:
    request.url = BATCH + request.url
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(ACCOUNT.name, DEV_KEY))
    captured: list[str] = []
    original = policy._sign_string

    def capture(string_to_sign: str) -> str:
        captured.append(string_to_sign)
        return str(original(string_to_sign))

    policy._sign_string = capture  # type: ignore[method-assign]
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    assert len(captured) == 1
    return captured[0]


def test_batch_list_with_filter_select_and_escaped_job_id() -> None:
    request = batch_ops.build_batch_list_tasks_request(
        "job 1",
        filter="state eq 'active' and id ge 'a+b'",
        select=["id", "state"],
        max_results=10,
        service_timeout=30,
    )
    request.headers["client-request-id"] = "3c2b"
    request.headers["return-client-request-id"] = "true"
    signed = _batch_sign(request)
    assert "\n$filter:state eq 'active' and id ge 'a+b'" in signed
    _assert_signed_string_is_candidate(signed, request, None, sharedkey.batch_candidates)


def test_batch_post_json_body_with_ocp_headers() -> None:
    body = json.dumps({"id": "job-1", "poolInfo": {"poolId": "p"}}).encode()
    request = batch_ops.build_batch_create_job_request(
        content=body, content_type="application/json; odata=minimalmetadata", service_timeout=30
    )
    request.headers["Content-Length"] = str(len(body))
    request.headers["ocp-date"] = DATE
    signed = _batch_sign(request)
    assert f"\n{len(body)}\n" in signed and f"ocp-date:{DATE}\n" in signed
    _assert_signed_string_is_candidate(signed, request, str(len(body)), sharedkey.batch_candidates)


@pytest.mark.parametrize("sent", ["0", None], ids=["sent-0", "sent-none"])
def test_batch_bodiless_delete_signs_zero_length(sent: str | None) -> None:
    request = batch_ops.build_batch_delete_pool_internal_request("pool-1")
    signed = _batch_sign(request)
    assert signed.startswith("DELETE\n\n\n0\n")
    _assert_signed_string_is_candidate(signed, request, sent, sharedkey.batch_candidates)


@pytest.mark.parametrize("sent", ["0", None], ids=["sent-0", "sent-none"])
def test_batch_get_never_signs_a_length(sent: str | None) -> None:
    request = batch_ops.build_batch_get_pool_request("pool-1", select=["id", "state"], expand=["stats"])
    request.headers["If-None-Match"] = '"0x1"'
    signed = _batch_sign(request)
    assert signed.startswith("GET\n\n\n\n")
    _assert_signed_string_is_candidate(signed, request, sent, sharedkey.batch_candidates)


def test_batch_file_path_with_escaped_slashes_and_ocp_range() -> None:
    request = batch_ops.build_batch_download_task_file_request(
        "job-1", "task-1", "wd/out dir/ü.txt", ocp_range="bytes=0-9"
    )
    signed = _batch_sign(request)
    assert "/wd%2Fout%20dir%2F%C3%BC.txt" in signed and "ocp-range:bytes=0-9\n" in signed
    _assert_signed_string_is_candidate(signed, request, None, sharedkey.batch_candidates)


def test_batch_tampered_request_is_not_a_candidate() -> None:
    request = batch_ops.build_batch_list_tasks_request("job-1", filter="state eq 'active'")
    signed = _batch_sign(request)
    request.url = request.url.replace("active", "completed")
    method, headers, path, query = _server_view(request, None)
    assert signed not in list(sharedkey.batch_candidates(method, headers, ACCOUNT.name, path, query))


# --- Blob: legacy azure-storage 0.33 (its own venv) -------------------------------------------------

_LEGACY_SIGNER = """
import json
from azure.storage._auth import _StorageSharedKeyAuthentication
from azure.storage._http import HTTPRequest
from azure.storage._constants import DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY

auth = _StorageSharedKeyAuthentication(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY)
signed = []
auth._add_authorization_header = lambda request, string_to_sign: signed.append(string_to_sign)
out = []
for case in json.loads('''CASES'''):
    request = HTTPRequest()
    request.method, request.path = case["method"], case["path"]
    request.query, request.headers = case["query"], case["headers"]
    auth.sign_request(request)
    out.append(signed[-1])
print(json.dumps(out))
"""

# 0.33 sends path-style requests to http://host:port/{account}{path} with these headers.
_LEGACY_CASES: list[dict[str, Any]] = [
    {
        "method": "PUT",
        "path": f"/{DEV_ACCOUNT}/inputs/dir/a%20b.txt",
        "query": {},
        "headers": {
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": "2015-07-08",
            "x-ms-date": DATE,
            "x-ms-meta-my-key": "1",
            "x-ms-meta-my_key": "2",
            "x-ms-meta-mykey": "3",
            "Content-Length": "5",
            "Content-Type": "application/octet-stream",
        },
    },
    {
        "method": "GET",
        "path": f"/{DEV_ACCOUNT}/inputs",
        "query": {
            "restype": "container",
            "comp": "list",
            "prefix": "dir/",
            "marker": "2!abc",
            "maxresults": "2",
        },
        "headers": {"x-ms-version": "2015-07-08", "x-ms-date": DATE},
    },
    {
        "method": "PUT",
        "path": f"/{DEV_ACCOUNT}/newcontainer",
        "query": {"restype": "container"},
        "headers": {"x-ms-version": "2015-07-08", "x-ms-date": DATE, "Content-Length": "0"},
    },
]


@pytest.fixture(scope="module")
def legacy_signed() -> list[str]:
    script = _LEGACY_SIGNER.replace("CASES", json.dumps(_LEGACY_CASES))
    result = run_script("legacy", script)
    assert isinstance(result, list)
    return [str(s) for s in result]


@pytest.mark.parametrize("index", range(len(_LEGACY_CASES)))
def test_legacy_storage_033_signed_string_is_a_candidate(legacy_signed: list[str], index: int) -> None:
    case = _LEGACY_CASES[index]
    headers = {k.lower(): v for k, v in case["headers"].items()}
    query = list(case["query"].items())
    strings = list(sharedkey.blob_candidates(case["method"], headers, ACCOUNT.name, case["path"], query))
    assert legacy_signed[index] in strings, (
        f"0.33 signed:\n{legacy_signed[index]!r}\ncandidates:\n{strings!r}"
    )
