"""SAS verification: tokens made by the SDK generators verify; everything else fails as Azure fails.

Generators: azure-storage-blob 12 (its default signed version and, through the generator's
``x_ms_version``, older versions that share its layout), the legacy azure-storage 0.33
(sv=2015-07-08, in its own venv), and reference strings written from Azure's documented
formulas for the versions no installed SDK emits.  No network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from azure.storage.blob import (
    generate_account_sas as sdk_account_sas,
)
from azure.storage.blob import (
    generate_blob_sas as sdk_blob_sas,
)
from azure.storage.blob import (
    generate_container_sas as sdk_container_sas,
)
from azure.storage.blob._shared.shared_access_signature import SharedAccessSignature
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

from openbatch.common import sas
from openbatch.config import DEV_ACCOUNT, DEV_KEY, Account, accounts_from
from tests.helpers.venvs import run_script

ACCOUNT = accounts_from(None, None)[DEV_ACCOUNT]
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
START = NOW - timedelta(hours=1)
EXPIRY = NOW + timedelta(hours=1)
ST, SE = START.strftime("%Y-%m-%dT%H:%M:%SZ"), EXPIRY.strftime("%Y-%m-%dT%H:%M:%SZ")
CLIENT = "127.0.0.1"


def _query(token: str) -> dict[str, str]:
    return dict(parse_qsl(token.lstrip("?"), keep_blank_values=True))


def _verify(
    token: str | dict[str, str],
    container: str = "inputs",
    blob: str | None = "dir/data file.txt",
    *,
    ip: str = CLIENT,
    scheme: str = "http",
    now: datetime = NOW,
    account: Account = ACCOUNT,
) -> sas.SasAccess:
    query = _query(token) if isinstance(token, str) else token
    return sas.verify_blob_sas(query, account, container, blob, client_ip=ip, scheme=scheme, now=now)


def _fails(token: str | dict[str, str], code: str, status: int = 403, **kw: Any) -> sas.SasError:
    with pytest.raises(sas.SasError) as info:
        _verify(token, **kw)
    assert (info.value.code, info.value.status) == (code, status), info.value.message
    return info.value


def _sign(string_to_sign: str, key: str = DEV_KEY) -> str:
    digest = hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# --- azure-storage-blob 12 ------------------------------------------------------------------------


def test_sdk_blob_sas_default_version_verifies() -> None:
    token = sdk_blob_sas(
        DEV_ACCOUNT, "inputs", "dir/data file.txt", account_key=DEV_KEY, permission="r", expiry=EXPIRY
    )
    access = _verify(token)
    assert access == sas.SasAccess(DEV_ACCOUNT, frozenset("r"), "b", {})
    assert _query(token)["sv"] >= "2020-12-06"


def test_sdk_blob_sas_with_every_option_verifies() -> None:
    token = sdk_blob_sas(
        DEV_ACCOUNT,
        "inputs",
        "dir/data file.txt",
        account_key=DEV_KEY,
        permission="racwd",
        expiry=EXPIRY,
        start=START,
        ip="127.0.0.1",
        protocol="https,http",
        cache_control="no-cache",
        content_disposition="attachment; filename=x.txt",
        content_encoding="gzip",
        content_language="de-DE",
        content_type="text/plain; charset=utf-8",
        encryption_scope="scope1",
    )
    access = _verify(token)
    assert access.permissions == frozenset("racwd")
    assert access.overrides == {
        "Cache-Control": "no-cache",
        "Content-Disposition": "attachment; filename=x.txt",
        "Content-Encoding": "gzip",
        "Content-Language": "de-DE",
        "Content-Type": "text/plain; charset=utf-8",
    }


def test_sdk_container_sas_verifies_for_container_and_its_blobs() -> None:
    token = sdk_container_sas(
        DEV_ACCOUNT, "inputs", account_key=DEV_KEY, permission="rwl", expiry=EXPIRY, start=START
    )
    assert _verify(token, blob=None).resource == "c"
    assert _verify(token, blob="any/blob.bin").permissions == frozenset("rwl")


@pytest.mark.parametrize("version", ["2020-12-06", "2021-08-06", "2023-11-03"])
def test_sdk_generator_with_version_override(version: str) -> None:
    generator = BlobSharedAccessSignature(DEV_ACCOUNT, account_key=DEV_KEY)
    generator.x_ms_version = version
    blob_token = generator.generate_blob(
        "inputs", "dir/data file.txt", permission="r", expiry=EXPIRY, ip=CLIENT
    )
    container_token = generator.generate_container(
        "inputs", permission="l", expiry=EXPIRY, content_type="a/b"
    )
    assert _query(blob_token)["sv"] == version
    assert _verify(blob_token).resource == "b"
    assert _verify(container_token, blob=None).overrides == {"Content-Type": "a/b"}


@pytest.mark.parametrize("version", ["2020-12-06", "2021-08-06", None])
def test_sdk_account_sas_verifies(version: str | None) -> None:
    if version is None:
        token = sdk_account_sas(
            DEV_ACCOUNT, DEV_KEY, resource_types="sco", permission="rwdlac", expiry=EXPIRY
        )
    else:
        generator = SharedAccessSignature(DEV_ACCOUNT, DEV_KEY, x_ms_version=version)
        token = generator.generate_account("b", "sco", "rwdlac", EXPIRY, start=START, protocol="https,http")
    for container, blob in (("", None), ("inputs", None), ("inputs", "x")):
        access = _verify(token, container, blob)
        assert access == sas.SasAccess(DEV_ACCOUNT, frozenset("rwdlac"), "account", {})


def test_our_generator_matches_the_sdk_signature() -> None:
    generator = BlobSharedAccessSignature(DEV_ACCOUNT, account_key=DEV_KEY)
    generator.x_ms_version = "2021-08-06"
    theirs = _query(generator.generate_blob("inputs", "a b.txt", permission="rw", expiry=EXPIRY, start=START))
    ours = _query(sas.generate_blob_sas(ACCOUNT, "inputs", "a b.txt", "rw", EXPIRY, start=START))
    assert ours["sig"] == theirs["sig"]
    theirs = _query(generator.generate_container("inputs", permission="rl", expiry=EXPIRY))
    ours = _query(sas.generate_container_sas(ACCOUNT, "inputs", "rl", EXPIRY))
    assert ours["sig"] == theirs["sig"]
    account_sdk = SharedAccessSignature(DEV_ACCOUNT, DEV_KEY, x_ms_version="2021-08-06")
    theirs = _query(account_sdk.generate_account("b", "sco", "rl", EXPIRY))
    ours = _query(sas.generate_account_sas(ACCOUNT, "sco", "rl", EXPIRY))
    assert ours["sig"] == theirs["sig"]


@pytest.mark.parametrize("version", ["2013-08-15", "2015-04-05", "2018-11-09", "2021-08-06"])
def test_our_generated_tokens_verify(version: str) -> None:
    blob_token = sas.generate_blob_sas(ACCOUNT, "inputs", "dir/data file.txt", "r", EXPIRY, version=version)
    container_token = sas.generate_container_sas(
        ACCOUNT, "inputs", "wl", EXPIRY, start=START, version=version
    )
    assert _verify(blob_token).permissions == frozenset("r")
    assert _verify(container_token, blob=None).permissions == frozenset("wl")


# --- legacy azure-storage 0.33 (sv=2015-07-08) -------------------------------------------------------

_LEGACY = f"""
import json
from azure.storage.blob import BlockBlobService

svc = BlockBlobService(account_name="{DEV_ACCOUNT}", account_key="{DEV_KEY}")
out = {{
    "blob": svc.generate_blob_shared_access_signature(
        "inputs", "dir/data file.txt", permission="r", expiry="{SE}", start="{ST}"),
    "blob_options": svc.generate_blob_shared_access_signature(
        "inputs", "dir/data file.txt", permission="rw", expiry="{SE}", ip="127.0.0.1",
        protocol="https,http", cache_control="no-cache", content_type="text/csv"),
    "container": svc.generate_container_shared_access_signature(
        "inputs", permission="rwdl", expiry="{SE}", start="{ST}"),
    "account": svc.generate_account_shared_access_signature("sco", "rwdl", "{SE}", start="{ST}"),
    "https_only": svc.generate_blob_shared_access_signature(
        "inputs", "dir/data file.txt", permission="r", expiry="{SE}", protocol="https"),
}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def legacy_tokens() -> dict[str, str]:
    result = run_script("legacy", _LEGACY)
    assert isinstance(result, dict)
    return {str(k): str(v) for k, v in result.items()}


def test_legacy_blob_sas_verifies(legacy_tokens: dict[str, str]) -> None:
    assert _query(legacy_tokens["blob"])["sv"] == "2015-07-08"
    assert _verify(legacy_tokens["blob"]).permissions == frozenset("r")
    access = _verify(legacy_tokens["blob_options"])
    assert access.overrides == {"Cache-Control": "no-cache", "Content-Type": "text/csv"}


def test_legacy_container_and_account_sas_verify(legacy_tokens: dict[str, str]) -> None:
    assert _verify(legacy_tokens["container"], blob=None).permissions == frozenset("rwdl")
    assert _verify(legacy_tokens["container"]).resource == "c"
    assert _verify(legacy_tokens["account"], "", None).resource == "account"


def test_legacy_https_only_sas_rejects_http(legacy_tokens: dict[str, str]) -> None:
    _fails(legacy_tokens["https_only"], "AuthorizationProtocolMismatch")
    assert _verify(legacy_tokens["https_only"], scheme="https").resource == "b"


def test_legacy_tampered_sas_fails(legacy_tokens: dict[str, str]) -> None:
    query = _query(legacy_tokens["blob"]) | {"sp": "rw"}
    _fails(query, "AuthenticationFailed")


# --- versions no installed SDK emits: strings from Azure's documented formulas ------------------------


def _reference_token(version: str, resource: str, fields: list[str]) -> dict[str, str]:
    query = {"sv": version, "sr": resource, "sp": "r", "st": ST, "se": SE, "rsct": "text/plain"}
    query["sig"] = _sign("\n".join(fields))
    return query


_CR_OLD = f"/{DEV_ACCOUNT}/inputs/dir/data file.txt"
_CR_NEW = f"/blob/{DEV_ACCOUNT}/inputs/dir/data file.txt"
_REFERENCE = {
    # sp, st, se, canonicalized resource, si, sv (2012-02-12)
    "2012-02-12": ["r", ST, SE, _CR_OLD, "", "2012-02-12"],
    # ... + the five response-header overrides (2013-08-15 through 2015-02-21)
    "2013-08-15": ["r", ST, SE, _CR_OLD, "", "2013-08-15", "", "", "", "", "text/plain"],
    # the canonicalized resource starts with the service name from 2015-02-21
    "2015-02-21": ["r", ST, SE, _CR_NEW, "", "2015-02-21", "", "", "", "", "text/plain"],
    # + signed IP and protocol (2015-04-05)
    "2015-04-05": ["r", ST, SE, _CR_NEW, "", "", "", "2015-04-05", "", "", "", "", "text/plain"],
    # + signed resource and snapshot time (2018-11-09)
    "2018-11-09": ["r", ST, SE, _CR_NEW, "", "", "", "2018-11-09", "b", "", "", "", "", "", "text/plain"],
    # + encryption scope (2020-12-06)
    "2020-12-06": ["r", ST, SE, _CR_NEW, "", "", "", "2020-12-06", "b", "", "", "", "", "", "", "text/plain"],
}


@pytest.mark.parametrize("version", sorted(_REFERENCE))
def test_documented_string_to_sign_per_version(version: str) -> None:
    token = _reference_token(version, "b", _REFERENCE[version])
    access = _verify(token)
    expected = {} if version < "2013-08-15" else {"Content-Type": "text/plain"}
    assert access.overrides == expected
    for other in sorted(set(_REFERENCE) - {version}):
        _fails(_reference_token(other, "b", _REFERENCE[version]), "AuthenticationFailed")


def test_documented_2012_example_string() -> None:
    query = {
        "sv": "2012-02-12",
        "st": "2009-02-09",
        "se": "2009-02-10",
        "sr": "c",
        "sp": "r",
        "si": "YWJjZGVmZw==",
    }
    got = sas.service_string_to_sign(query, "myaccount", "pictures", None)
    assert got == "r\n2009-02-09\n2009-02-10\n/myaccount/pictures\nYWJjZGVmZw==\n2012-02-12"


def test_account_sas_before_2020_12_06_has_no_encryption_scope_line() -> None:
    fields = [DEV_ACCOUNT, "rl", "b", "sco", "", SE, "", "", "2019-12-12", ""]
    query = {
        "sv": "2019-12-12",
        "ss": "b",
        "srt": "sco",
        "sp": "rl",
        "se": SE,
        "sig": _sign("\n".join(fields)),
    }
    assert _verify(query, "inputs", None).resource == "account"
    query["sv"] = "2020-12-06"
    query["sig"] = _sign("\n".join([*fields[:8], "2020-12-06", "", ""]))
    assert _verify(query, "inputs", None).resource == "account"


# --- failures ---------------------------------------------------------------------------------------


def _blob_token(**kw: Any) -> str:
    args: dict[str, Any] = {"permission": "r", "expiry": EXPIRY, "start": START} | kw
    return sdk_blob_sas(DEV_ACCOUNT, "inputs", "dir/data file.txt", account_key=DEV_KEY, **args)


def test_tampered_permissions_fail_without_leaking_the_signature() -> None:
    query = _query(_blob_token()) | {"sp": "rwd"}
    err = _fails(query, "AuthenticationFailed")
    assert err.message.startswith("Signature did not match. String to sign used was rwd\n")
    assert query["sig"] not in err.message and DEV_KEY not in err.message


def test_sas_for_another_blob_or_container_fails() -> None:
    token = _blob_token()
    _fails(token, "AuthenticationFailed", blob="dir/other.txt")
    _fails(token, "AuthenticationFailed", container="outputs")
    container_token = sdk_container_sas(
        DEV_ACCOUNT, "inputs", account_key=DEV_KEY, permission="r", expiry=EXPIRY
    )
    _fails(container_token, "AuthenticationFailed", container="outputs", blob=None)


def test_signature_of_another_account_or_key_fails() -> None:
    other_key = base64.b64encode(b"k" * 64).decode()
    token = sdk_blob_sas(
        DEV_ACCOUNT, "inputs", "dir/data file.txt", account_key=other_key, permission="r", expiry=EXPIRY
    )
    _fails(token, "AuthenticationFailed")


def test_either_key_of_the_account_verifies() -> None:
    second = base64.b64encode(b"second-key" * 6).decode()
    account = Account(DEV_ACCOUNT, (ACCOUNT.keys[0], base64.b64decode(second)))
    token = sdk_blob_sas(
        DEV_ACCOUNT, "inputs", "dir/data file.txt", account_key=second, permission="r", expiry=EXPIRY
    )
    assert _verify(token, account=account).resource == "b"
    _fails(token, "AuthenticationFailed")  # the dev account has only the first key


def test_unescaped_plus_in_signature_is_tolerated() -> None:
    for i in range(40):
        token = _blob_token(permission="r", cache_control=f"max-age={i}")
        if "%2B" in token:
            break
    else:
        pytest.skip("no signature with '+' found")
    assert _verify(token.replace("%2B", "+")).resource == "b"


def test_expired_and_not_yet_valid_fail() -> None:
    err = _fails(_blob_token(), "AuthenticationFailed", now=EXPIRY + timedelta(seconds=1))
    assert err.message.startswith("Signature not valid in the specified time frame: Start [")
    assert "Current [Sat, 01 Jun 2030 13:00:01 GMT]" in err.message
    err = _fails(_blob_token(), "AuthenticationFailed", now=START - timedelta(minutes=5))
    assert "Signature not valid in the specified time frame" in err.message
    assert _verify(_blob_token(), now=EXPIRY).resource == "b"


def test_expired_without_start_and_expiry_before_start_fail() -> None:
    err = _fails(_blob_token(start=None), "AuthenticationFailed", now=EXPIRY + timedelta(days=1))
    assert err.message == (
        "Signed expiry time [Sat, 01 Jun 2030 13:00:00 GMT] must be after signed start time "
        "[Sun, 02 Jun 2030 13:00:00 GMT]"
    )
    err = _fails(_blob_token(start=EXPIRY, expiry=START), "AuthenticationFailed")
    assert err.message.startswith("Signed expiry time [Sat, 01 Jun 2030 11:00:00 GMT] must be after")


def test_source_ip_rules() -> None:
    _fails(_blob_token(ip="10.0.0.1"), "AuthorizationSourceIPMismatch")
    assert _verify(_blob_token(ip="127.0.0.1-127.0.0.9"), ip="127.0.0.3").resource == "b"
    assert _verify(_blob_token(ip="127.0.0.1"), ip="::ffff:127.0.0.1").resource == "b"
    err = _fails(_blob_token(ip="127.0.0.2-127.0.0.9"), "AuthorizationSourceIPMismatch")
    assert "source IP 127.0.0.1" in err.message
    _fails(_blob_token(ip="127.0.0.1"), "AuthorizationSourceIPMismatch", ip="::1")


def test_protocol_rules() -> None:
    _fails(_blob_token(protocol="https"), "AuthorizationProtocolMismatch")
    assert _verify(_blob_token(protocol="https"), scheme="https").resource == "b"
    assert _verify(_blob_token(protocol="https,http")).resource == "b"


def test_missing_permission_is_the_callers_check() -> None:
    access = _verify(_blob_token(permission="r"))
    sas.check_permission(access, "r")
    with pytest.raises(sas.SasError) as info:
        sas.check_permission(access, "wc")
    assert (info.value.code, info.value.status) == ("AuthorizationPermissionMismatch", 403)


def test_wrong_resource_type() -> None:
    _fails(_blob_token(), "AuthorizationResourceTypeMismatch", blob=None)
    container_token = sdk_container_sas(
        DEV_ACCOUNT, "inputs", account_key=DEV_KEY, permission="l", expiry=EXPIRY
    )
    _fails(container_token, "AuthorizationResourceTypeMismatch", container="", blob=None)
    objects_only = sdk_account_sas(DEV_ACCOUNT, DEV_KEY, resource_types="o", permission="r", expiry=EXPIRY)
    _fails(objects_only, "AuthorizationResourceTypeMismatch", blob=None)
    _fails(objects_only, "AuthorizationResourceTypeMismatch", container="", blob=None)
    assert _verify(objects_only).resource == "account"
    service_only = sdk_account_sas(DEV_ACCOUNT, DEV_KEY, resource_types="s", permission="rl", expiry=EXPIRY)
    _fails(service_only, "AuthorizationResourceTypeMismatch")
    assert _verify(service_only, "", None).resource == "account"


def test_account_sas_for_another_service() -> None:
    queue_only = sdk_account_sas(
        DEV_ACCOUNT, DEV_KEY, resource_types="sco", permission="r", expiry=EXPIRY, services="q"
    )
    _fails(queue_only, "AuthorizationServiceMismatch")


def test_stored_access_policy_is_not_found() -> None:
    token = sdk_container_sas(DEV_ACCOUNT, "inputs", account_key=DEV_KEY, policy_id="policy-1")
    err = _fails(token, "AuthenticationFailed", blob=None)
    assert "policy-1" in err.message


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"se": "not-a-date"}, "Signature fields not well formed."),
        ({"se": "2030-13-45"}, "Signature fields not well formed."),
        ({"se": ""}, "se is mandatory. Cannot be empty"),
        ({"sp": ""}, "sp is mandatory. Cannot be empty"),
        ({"sp": "r?"}, "Signature fields not well formed."),
        ({"sr": "q"}, "Signature fields not well formed."),
        ({"sr": "bs"}, "Signature fields not well formed."),
        ({"sv": "latest"}, "Signature fields not well formed."),
        ({"sip": "300.1.1.1"}, "Signature fields not well formed."),
        ({"spr": "ftp"}, "Signature fields not well formed."),
        ({"sig": ""}, None),
    ],
)
def test_malformed_fields(change: dict[str, str], detail: str | None) -> None:
    # Re-sign the changed fields, so only the malformed value can be what fails.
    query = _query(_blob_token()) | change
    string_to_sign = sas.service_string_to_sign(query, DEV_ACCOUNT, "inputs", "dir/data file.txt")
    if change != {"sig": ""}:
        query["sig"] = _sign(string_to_sign)
    err = _fails(query, "AuthenticationFailed")
    if detail:
        assert err.message == detail


def test_no_sr_and_no_account_fields_is_rejected() -> None:
    query = _query(_blob_token())
    del query["sr"]
    assert _fails(query, "AuthenticationFailed").message == "sr is mandatory. Cannot be empty"


@pytest.mark.parametrize(
    "value",
    [
        "2030-06-01",
        "2030-06-01T13:00Z",
        "2030-06-01T13:00:00Z",
        "2030-06-01T13:00:00.1234567Z",
        "2030-06-01T15:00:00+02:00",
    ],
)
def test_time_formats_azure_accepts(value: str) -> None:
    query = {"sv": "2021-08-06", "sr": "b", "sp": "r", "se": value}
    query["sig"] = _sign(sas.service_string_to_sign(query, DEV_ACCOUNT, "inputs", "b"))
    assert _verify(query, blob="b", now=datetime(2030, 5, 31, tzinfo=UTC)).resource == "b"


def test_unknown_newer_version_is_served_with_the_latest_layout() -> None:
    generator = BlobSharedAccessSignature(DEV_ACCOUNT, account_key=DEV_KEY)
    generator.x_ms_version = "2099-01-01"
    assert (
        _verify(
            generator.generate_blob("inputs", "dir/data file.txt", permission="r", expiry=EXPIRY)
        ).resource
        == "b"
    )


def test_is_sas() -> None:
    assert sas.is_sas(_query(_blob_token()))
    assert not sas.is_sas({"restype": "container", "comp": "list"})


def test_nothing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    token = _blob_token()
    with caplog.at_level(logging.DEBUG):
        _verify(token)
        with pytest.raises(sas.SasError):
            _verify(_query(token) | {"sp": "rw"})
    signature = quote(_query(token)["sig"], safe="")
    assert not any(
        _query(token)["sig"] in r.getMessage() or signature in r.getMessage() for r in caplog.records
    )
