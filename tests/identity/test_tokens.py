"""The token verifier's refusals and the issuer's claims (no server: the module itself)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from openbatch.common.identity import (
    STORAGE_OWNER,
    STORAGE_READER,
    IdentityService,
    SigningKey,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    add_identity,
    batch_audiences,
    storage_audiences,
)


@pytest.fixture()
def service(tmp_path: Path) -> IdentityService:
    add_identity(tmp_path, {"name": "reader", "clientId": "c-reader", "objectId": "o-reader",
                            "roles": [{"role": STORAGE_READER, "scope": "acct1"}]})
    return IdentityService(tmp_path)


def _token(service: IdentityService, audience: str = "https://storage.azure.com", **kw: object) -> str:
    token, _ = service.issuer.issue("o-reader", "c-reader", audience, **kw)  # type: ignore[arg-type]
    return token


def test_a_token_for_the_storage_resource_verifies_with_its_roles(service: IdentityService) -> None:
    principal = service.verifier.verify(_token(service), storage_audiences("acct1"))
    assert principal.object_id == "o-reader" and principal.verified
    assert principal.has_role({STORAGE_READER}, "acct1")
    assert not principal.has_role({STORAGE_READER}, "acct2")
    assert not principal.has_role({STORAGE_OWNER}, "acct1")


def test_account_specific_audience_is_accepted_for_that_account_only(service: IdentityService) -> None:
    token = _token(service, "https://acct1.blob.core.windows.net")
    assert service.verifier.verify(token, storage_audiences("acct1")).audience.startswith("https://acct1")
    with pytest.raises(TokenError) as err:
        service.verifier.verify(token, storage_audiences("acct2"))
    assert err.value.reason == "audience"


def test_another_audience_expired_and_tampered_tokens_are_refused(service: IdentityService) -> None:
    with pytest.raises(TokenError) as err:
        service.verifier.verify(_token(service, "https://batch.core.windows.net/"), storage_audiences("acct1"))
    assert err.value.reason == "audience" and "Audience validation failed" in err.value.detail
    with pytest.raises(TokenError) as err:
        service.verifier.verify(_token(service, now=1_000_000, lifetime=60), storage_audiences("acct1"))
    assert err.value.reason == "expired"
    header, body, signature = _token(service).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["oid"] = "someone-else"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        service.verifier.verify(f"{header}.{forged}.{signature}", storage_audiences("acct1"))
    assert err.value.reason == "signature"
    for garbage in ("", "a.b", "x.y.z", "a" * 20000):
        with pytest.raises(TokenError) as err:
            service.verifier.verify(garbage, batch_audiences())
        assert err.value.reason == "malformed"


def test_expiry_has_five_minutes_of_grace(service: IdentityService) -> None:
    token = _token(service, now=1_000_000, lifetime=60)
    service.verifier.verify(token, storage_audiences("acct1"), now=1_000_000 + 60 + 299)
    with pytest.raises(TokenError):
        service.verifier.verify(token, storage_audiences("acct1"), now=1_000_000 + 60 + 301)


def test_another_key_is_refused_unless_accept_any_which_grants_every_role(tmp_path: Path,
                                                                         service: IdentityService) -> None:
    other = TokenIssuer(SigningKey.load_or_create(tmp_path / "other"))
    token, _ = other.issue("o-x", "c-x", "https://storage.azure.com/")
    with pytest.raises(TokenError) as err:
        service.verifier.verify(token, storage_audiences("acct1"))
    assert err.value.reason == "signature"
    lenient = TokenVerifier(service.key, service.issuer.issuer, service.directory.roles_of, accept_any=True)
    principal = lenient.verify(token, storage_audiences("acct1"))
    assert not principal.verified and principal.has_role({STORAGE_OWNER}, "acct1")
    # accept-any still checks the audience and the expiry, and our own tokens keep their roles
    with pytest.raises(TokenError):
        lenient.verify(token, batch_audiences())
    own = lenient.verify(_token(service), storage_audiences("acct1"))
    assert own.verified and not own.has_role({STORAGE_OWNER}, "acct1")


def test_the_key_and_the_directory_survive_a_restart(tmp_path: Path, service: IdentityService) -> None:
    token = _token(service)
    again = IdentityService(tmp_path)
    assert again.verifier.verify(token, storage_audiences("acct1")).object_id == "o-reader"
    assert again.directory.identity_header == service.directory.identity_header
    assert (tmp_path / "identity" / "signing-key.pem").stat().st_mode & 0o077 == 0
