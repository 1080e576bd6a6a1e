"""Shared access signatures (SAS) for the Blob service: verification and generation.

Service SAS (``sr=b`` blob, ``sr=c`` container) and account SAS (``ss``/``srt``) are verified
against every key of the account.  The string-to-sign depends on the signed version ``sv``;
each layout below is the one Azure defines for that version range and the SDKs
(azure-storage 0.33, azure-storage-blob 12) produce.  Signatures are compared in constant time;
neither signatures nor query strings are ever logged, and error messages show at most the
string-to-sign (which holds no secret), as Azure's own ``AuthenticationErrorDetail`` does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import quote

from openbatch.common import delegation
from openbatch.common.sharedkey import matches, sign
from openbatch.config import Account

__all__ = [
    "SasAccess",
    "SasError",
    "StoredPolicy",
    "check_permission",
    "generate_account_sas",
    "generate_blob_sas",
    "generate_container_sas",
    "is_sas",
    "service_string_to_sign",
    "account_string_to_sign",
    "verify_blob_sas",
]

# Letters Azure defines for Blob service SAS and for account SAS permissions.
SERVICE_PERMISSIONS = frozenset("racwdxyltfmeiop")
ACCOUNT_PERMISSIONS = frozenset("rwdxylacuptfi")

# Response headers a service SAS may override on reads (version 2013-08-15 and later).
OVERRIDE_HEADERS = {
    "rscc": "Cache-Control",
    "rscd": "Content-Disposition",
    "rsce": "Content-Encoding",
    "rscl": "Content-Language",
    "rsct": "Content-Type",
}
_OVERRIDES = tuple(OVERRIDE_HEADERS)
_BASE = ("sp", "st", "se", "cr", "si")

# Service SAS string-to-sign per signed version: (first sv, fields in order, resource prefix).
# "cr" is the canonicalized resource, "snapshot" the signed snapshot time.
_SERVICE_LAYOUTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("2020-12-06", (*_BASE, "sip", "spr", "sv", "sr", "snapshot", "ses", *_OVERRIDES), "/blob"),
    ("2018-11-09", (*_BASE, "sip", "spr", "sv", "sr", "snapshot", *_OVERRIDES), "/blob"),
    ("2015-04-05", (*_BASE, "sip", "spr", "sv", *_OVERRIDES), "/blob"),
    ("2015-02-21", (*_BASE, "sv", *_OVERRIDES), "/blob"),
    ("2013-08-15", (*_BASE, "sv", *_OVERRIDES), ""),
    ("2012-02-12", (*_BASE, "sv"), ""),
    ("", _BASE, ""),
)

# Account SAS string-to-sign: the account name, then these fields, each followed by "\n".
_ACCOUNT_LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("2020-12-06", ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv", "ses")),
    ("2015-04-05", ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv")),
)

_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:\d{2})?)?"
)

_AUTH_FAILED = "AuthenticationFailed"
_NOT_WELL_FORMED = "Signature fields not well formed."


class SasError(Exception):
    """A SAS that does not authorize the request; carries the Azure error code and status.

    For ``AuthenticationFailed`` the message is what Azure puts in ``AuthenticationErrorDetail``.
    """

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SasAccess:
    """What a verified SAS grants: the caller checks ``permissions`` against the operation."""

    account: str
    permissions: frozenset[str]
    resource: str  # "b" blob, "c" container, "account"
    overrides: dict[str, str] = field(default_factory=dict)  # response header -> value


@dataclass(frozen=True)
class StoredPolicy:
    """A stored access policy of a container (its signed identifier's AccessPolicy): each field, when
    set, stands for the SAS field of the same meaning, which the SAS then must not carry."""

    start: str | None = None  # st
    expiry: str | None = None  # se
    permission: str | None = None  # sp


# The stored access policy a signed identifier (si) names, or None when the container has none such.
PolicyLookup = Callable[[str], "StoredPolicy | None"]


def _auth_failed(detail: str) -> SasError:
    return SasError(_AUTH_FAILED, 403, detail)


def is_sas(query: Mapping[str, str]) -> bool:
    """Whether the request carries a shared access signature."""
    return "sig" in query


def check_permission(access: SasAccess, any_of: str) -> None:
    """Raise 403 AuthorizationPermissionMismatch unless the SAS grants one of ``any_of``."""
    if not access.permissions.intersection(any_of):
        raise SasError(
            "AuthorizationPermissionMismatch",
            403,
            "This request is not authorized to perform this operation using this permission.",
        )


# --- strings to sign ----------------------------------------------------------------------------


def _service_layout(version: str) -> tuple[tuple[str, ...], str]:
    for first, fields, prefix in _SERVICE_LAYOUTS:
        if version >= first:
            return fields, prefix
    raise AssertionError("unreachable: the last layout matches every version")


def service_string_to_sign(query: Mapping[str, str], account: str, container: str, blob: str | None) -> str:
    """The service SAS string-to-sign for ``query`` (decoded values), per its ``sv``.

    ``blob`` is None for a container SAS.  The signed snapshot time (2018-11-09 and later)
    comes from the request's ``snapshot`` (or ``versionid``) parameter for ``sr=bs``/``bv``.
    """
    fields, prefix = _service_layout(query.get("sv", ""))
    resource = f"{prefix}/{account}/{container}" + (f"/{blob}" if blob is not None else "")
    snapshot = ""
    if query.get("sr") in ("bs", "bv"):
        snapshot = query.get("snapshot") or query.get("versionid") or ""
    values = {"cr": resource, "snapshot": snapshot}
    return "\n".join(values[name] if name in values else query.get(name, "") for name in fields)


def account_string_to_sign(query: Mapping[str, str], account: str) -> str:
    """The account SAS string-to-sign for ``query`` (decoded values), per its ``sv``."""
    version = query.get("sv", "")
    fields = next((f for first, f in _ACCOUNT_LAYOUTS if version >= first), _ACCOUNT_LAYOUTS[-1][1])
    return account + "\n" + "".join(query.get(name, "") + "\n" for name in fields)


# --- parsing ------------------------------------------------------------------------------------


def _parse_time(value: str) -> datetime:
    """An ISO 8601 SAS time (date; or date and time, to minutes/seconds/fraction; UTC if no zone)."""
    m = _TIME_RE.fullmatch(value)
    if m is None:
        raise _auth_failed(_NOT_WELL_FORMED)
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    micro = int((fraction or "0").ljust(7, "0")[:6])
    tz = UTC
    if zone and zone != "Z":
        sign_ = -1 if zone[0] == "-" else 1
        tz = timezone(sign_ * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro, tz
        )
    except ValueError as exc:
        raise _auth_failed(_NOT_WELL_FORMED) from exc
    return parsed.astimezone(UTC)


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _mandatory(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise _auth_failed(f"{name} is mandatory. Cannot be empty")
    return value


def _permissions(value: str, allowed: frozenset[str]) -> frozenset[str]:
    letters = frozenset(value)
    if not letters <= allowed:
        raise _auth_failed(_NOT_WELL_FORMED)
    return letters


def _ip_allowed(sip: str, client_ip: str) -> bool:
    """Whether ``client_ip`` is ``sip`` (one address) or inside it (``low-high``)."""
    try:
        low, _, high = sip.partition("-")
        first = ipaddress.ip_address(low.strip())
        last = ipaddress.ip_address(high.strip()) if high else first
    except ValueError as exc:
        raise _auth_failed(_NOT_WELL_FORMED) from exc
    try:
        client = ipaddress.ip_address(client_ip.split("%")[0])
    except ValueError:
        return False
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    if client.version != first.version or first.version != last.version:
        return False
    return int(first) <= int(client) <= int(last)


# --- checks shared by service and account SAS ---------------------------------------------------


def _check_version(query: Mapping[str, str], *, required: bool) -> str:
    version = query.get("sv", "")
    if version and not _VERSION_RE.fullmatch(version):
        raise _auth_failed(_NOT_WELL_FORMED)
    if required and not version:
        raise _auth_failed("sv is mandatory. Cannot be empty")
    return version


def _check_signature(account: Account, query: Mapping[str, str], string_to_sign: str) -> None:
    # A '+' of the base64 signature arrives as ' ' when the client did not escape it.
    signature = query.get("sig", "").replace(" ", "+")
    if not signature or not matches(account, signature, [string_to_sign]):
        raise _auth_failed(f"Signature did not match. String to sign used was {string_to_sign}")


def _check_time(query: Mapping[str, str], now: datetime) -> None:
    expiry = _parse_time(_mandatory(query, "se"))
    start = _parse_time(query["st"]) if query.get("st") else None
    now = now.astimezone(UTC).replace(microsecond=0)
    effective_start = start or now
    if expiry <= effective_start:
        raise _auth_failed(
            f"Signed expiry time [{_http_date(expiry)}] must be after signed start time "
            f"[{_http_date(effective_start)}]"
        )
    if now < effective_start or now > expiry:
        raise _auth_failed(
            f"Signature not valid in the specified time frame: Start [{_http_date(effective_start)}]"
            f" - Expiry [{_http_date(expiry)}] - Current [{_http_date(now)}]"
        )


def _check_source(query: Mapping[str, str], client_ip: str, scheme: str) -> None:
    sip = query.get("sip", "")
    if sip and not _ip_allowed(sip, client_ip):
        raise SasError(
            "AuthorizationSourceIPMismatch",
            403,
            f"This request is not authorized to perform this operation using this source IP {client_ip}.",
        )
    spr = query.get("spr", "")
    if not spr:
        return
    protocols = {p.strip().lower() for p in spr.split(",")}
    if not protocols <= {"https", "http"} or "https" not in protocols:
        raise _auth_failed(_NOT_WELL_FORMED)
    if scheme.lower() not in protocols:
        raise SasError(
            "AuthorizationProtocolMismatch",
            403,
            "This request is not authorized to perform this operation using this protocol.",
        )


def _resource_type_mismatch() -> SasError:
    return SasError(
        "AuthorizationResourceTypeMismatch",
        403,
        "This request is not authorized to perform this operation using this resource type.",
    )


# --- verification -------------------------------------------------------------------------------


def verify_blob_sas(
    query: Mapping[str, str],
    account: Account,
    container: str,
    blob: str | None,
    *,
    client_ip: str,
    scheme: str,
    now: datetime | None = None,
    policy: PolicyLookup | None = None,
) -> SasAccess:
    """Verify the SAS in ``query`` (decoded values) for a request on ``container``/``blob``.

    ``container`` is "" for service-level requests, ``blob`` None for container-level ones;
    ``policy`` finds the container's stored access policy a service SAS names (``si``).
    Raises SasError with Azure's code and status when the SAS does not authenticate the request;
    the permissions are the caller's to check (see ``check_permission``).
    """
    when = now or datetime.now(UTC)
    if query.get("sr"):
        return _verify_service(query, account, container, blob, client_ip, scheme, when, policy)
    if query.get("ss") or query.get("srt"):
        return _verify_account(query, account, container, blob, client_ip, scheme, when)
    raise _auth_failed("sr is mandatory. Cannot be empty")


def _verify_service(
    query: Mapping[str, str],
    account: Account,
    container: str,
    blob: str | None,
    client_ip: str,
    scheme: str,
    now: datetime,
    policy: PolicyLookup | None,
) -> SasAccess:
    version = _check_version(query, required=False)
    resource = query["sr"]
    if resource not in ("b", "c"):
        # Snapshot/version (bs, bv) and directory (d) SAS: resources this service does not have.
        raise _auth_failed(_NOT_WELL_FORMED)
    if not container or (resource == "b" and blob is None):
        raise _resource_type_mismatch()
    signed_blob = blob if resource == "b" else None
    if delegation.is_user_delegation(query):
        _check_delegation(query, account, container, signed_blob, now)
    else:
        _check_signature(account, query, service_string_to_sign(query, account.name, container, signed_blob))
    fields = _with_policy(query, policy) if query.get("si") else query
    permissions = _permissions(_mandatory(fields, "sp"), SERVICE_PERMISSIONS)
    _check_time(fields, now)
    _check_source(query, client_ip, scheme)
    overrides: dict[str, str] = {}
    if version >= "2013-08-15":
        overrides = {header: query[name] for name, header in OVERRIDE_HEADERS.items() if query.get(name)}
    return SasAccess(account.name, permissions, resource, overrides)


def _check_delegation(query: Mapping[str, str], account: Account, container: str, blob: str | None,
                      now: datetime) -> None:
    """A user delegation SAS: its key fields, the key's validity now, its signature by that key.
    Who signed it (``skoid``) and whether they still hold a role is the caller's to check."""
    for name in (*delegation.DELEGATION_FIELDS, "sv"):
        _mandatory(query, name)
    if query.get("si"):
        raise _auth_failed("A user delegation SAS cannot name a stored access policy (si).")
    if query["sks"] != "b":
        raise SasError("AuthorizationServiceMismatch", 403,
                       "This request is not authorized to perform this operation using this service.")
    key_start, key_expiry = _parse_time(query["skt"]), _parse_time(query["ske"])
    moment = now.astimezone(UTC).replace(microsecond=0)
    if not key_start <= moment <= key_expiry:
        raise _auth_failed(f"The user delegation key is not valid now: Start [{_http_date(key_start)}] - Expiry "
                           f"[{_http_date(key_expiry)}] - Current [{_http_date(moment)}]")
    resource = f"/blob/{account.name}/{container}" + (f"/{blob}" if blob is not None else "")
    mismatch = delegation.signature_mismatch(query, account, resource)
    if mismatch is not None:
        raise _auth_failed(f"Signature did not match. String to sign used was {mismatch}")


def parse_sas_time(value: str) -> datetime:
    """A SAS time (``st``/``se``/``skt``/``ske``) as an aware UTC datetime; SasError when malformed."""
    return _parse_time(value)


def _with_policy(query: Mapping[str, str], policy: PolicyLookup | None) -> Mapping[str, str]:
    """The SAS fields once its stored access policy (``si``) fills in start, expiry and permissions.
    A policy removed from the container revokes every SAS naming it; a field set both in the policy
    and in the SAS is refused, as Azure's "Define a stored access policy" says."""
    identifier = query["si"]
    stored = policy(identifier) if policy is not None else None
    if stored is None:
        raise _auth_failed(f"Signed identifier [{identifier}] is not found")
    fields = dict(query)
    for name, value in (("st", stored.start), ("se", stored.expiry), ("sp", stored.permission)):
        if not value:
            continue
        if query.get(name):
            raise _auth_failed(f"{name} is given both in the SAS and in the stored access policy [{identifier}].")
        fields[name] = value
    return fields


def _account_level(container: str, blob: str | None) -> str:
    if not container:
        return "s"
    return "c" if blob is None else "o"


def _verify_account(
    query: Mapping[str, str],
    account: Account,
    container: str,
    blob: str | None,
    client_ip: str,
    scheme: str,
    now: datetime,
) -> SasAccess:
    version = _check_version(query, required=True)
    services, resource_types = _mandatory(query, "ss"), _mandatory(query, "srt")
    if version < "2015-04-05" or not set(services) <= set("bfqt") or not set(resource_types) <= set("sco"):
        raise _auth_failed(_NOT_WELL_FORMED)
    _check_signature(account, query, account_string_to_sign(query, account.name))
    permissions = _permissions(_mandatory(query, "sp"), ACCOUNT_PERMISSIONS)
    _check_time(query, now)
    _check_source(query, client_ip, scheme)
    if "b" not in services:
        raise SasError(
            "AuthorizationServiceMismatch",
            403,
            "This request is not authorized to perform this operation using this service.",
        )
    if _account_level(container, blob) not in resource_types:
        raise _resource_type_mismatch()
    return SasAccess(account.name, permissions, "account", {})


# --- generation ---------------------------------------------------------------------------------


def _sas_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _token(fields: dict[str, str]) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in fields.items() if value)


def _service_sas(
    account: Account,
    container: str,
    blob: str | None,
    permissions: str,
    expiry: datetime,
    start: datetime | None,
    version: str,
    ip: str | None,
    protocol: str | None,
) -> str:
    fields = {
        "sv": version,
        "sr": "c" if blob is None else "b",
        "sp": permissions,
        "st": _sas_time(start) if start else "",
        "se": _sas_time(expiry),
        "sip": ip or "",
        "spr": protocol or "",
    }
    string_to_sign = service_string_to_sign(fields, account.name, container, blob)
    fields["sig"] = sign(account.keys[0], string_to_sign)
    return _token(fields)


def generate_container_sas(
    account: Account,
    container: str,
    permissions: str,
    expiry: datetime,
    *,
    start: datetime | None = None,
    version: str = "2021-08-06",
    ip: str | None = None,
    protocol: str | None = None,
) -> str:
    """A container SAS query string (no leading '?'), signed with the account's first key."""
    return _service_sas(account, container, None, permissions, expiry, start, version, ip, protocol)


def generate_blob_sas(
    account: Account,
    container: str,
    blob: str,
    permissions: str,
    expiry: datetime,
    *,
    start: datetime | None = None,
    version: str = "2021-08-06",
    ip: str | None = None,
    protocol: str | None = None,
) -> str:
    """A blob SAS query string (no leading '?'), signed with the account's first key."""
    return _service_sas(account, container, blob, permissions, expiry, start, version, ip, protocol)


def generate_account_sas(
    account: Account,
    resource_types: str,
    permissions: str,
    expiry: datetime,
    *,
    services: str = "b",
    start: datetime | None = None,
    version: str = "2021-08-06",
    ip: str | None = None,
    protocol: str | None = None,
) -> str:
    """An account SAS query string (no leading '?'), signed with the account's first key."""
    fields = {
        "sv": version,
        "ss": services,
        "srt": resource_types,
        "sp": permissions,
        "st": _sas_time(start) if start else "",
        "se": _sas_time(expiry),
        "sip": ip or "",
        "spr": protocol or "",
    }
    fields["sig"] = sign(account.keys[0], account_string_to_sign(fields, account.name))
    return _token(fields)
