"""User delegation keys and the signatures of user delegation SAS (Blob).

Get User Delegation Key answers a key derived from the account's first key and the key's signed
fields (``skoid sktid skt ske sks skv``), so nothing is stored: a user delegation SAS is checked by
deriving the same key from the fields it carries and comparing its signature in constant time
(``sas.verify_blob_sas`` does the rest: times, IP, protocol). The caller then allows no more than
the signer's roles allow at the time of the request (removing the role revokes the SAS, as on
Azure). Regenerating the account's first key invalidates the keys.

String-to-sign per signed version, as Azure's "Create a user delegation SAS" and azure-storage-blob
12 define it; ``skdutid``/``sduoid`` and ``srh``/``srq`` are the newest versions' fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import timedelta

from openbatch.config import Account

MAX_KEY_LIFETIME = timedelta(days=7)
DELEGATION_FIELDS = ("skoid", "sktid", "skt", "ske", "sks", "skv")
_OVERRIDES = ("rscc", "rscd", "rsce", "rscl", "rsct")


def delegation_key(account: Account, oid: str, tid: str, start: str, expiry: str, version: str) -> str:
    """The base64 value of the user delegation key with these fields (``sks`` is always ``b``)."""
    material = "\n".join(("openbatch-user-delegation", account.name, oid, tid, start, expiry, "b", version))
    return base64.b64encode(hmac.new(account.keys[0], material.encode(), hashlib.sha256).digest()).decode()


def is_user_delegation(query: Mapping[str, str]) -> bool:
    return "skoid" in query


def string_to_sign(query: Mapping[str, str], resource: str, layout: str) -> str:
    """``layout``: "2018" (before 2020-02-10), "2020" (+ saoid suoid scid), "2025" (+ skdutid sduoid),
    "2026" (+ srh srq)."""
    q = query
    values = [q.get("sp", ""), q.get("st", ""), q.get("se", ""), resource, *(q.get(f, "") for f in DELEGATION_FIELDS)]
    if layout != "2018":
        values += [q.get("saoid", ""), q.get("suoid", ""), q.get("scid", "")]
    if layout in ("2025", "2026"):
        values += [q.get("skdutid", ""), q.get("sduoid", "")]
    values += [q.get("sip", ""), q.get("spr", ""), q.get("sv", ""), q.get("sr", "")]
    values.append(q.get("snapshot", "") or q.get("versionid", "") if q.get("sr") in ("bs", "bv") else "")
    if layout != "2018":
        values.append(q.get("ses", ""))
    if layout == "2026":
        values += [q.get("srh", ""), q.get("srq", "")]
    values += [q.get(name, "") for name in _OVERRIDES]
    return "\n".join(values)


def _layouts(version: str) -> tuple[str, ...]:
    if version >= "2025-01-05":
        return ("2026", "2025", "2020")
    if version >= "2020-02-10":
        return ("2020",)
    return ("2018",)


def signature_mismatch(query: Mapping[str, str], account: Account, resource: str) -> str | None:
    """None when the SAS's signature is the one its delegation key makes over ``resource`` (the
    canonicalized ``/blob/account/container[/blob]``); else the string-to-sign, for Azure's detail."""
    q = query
    key = base64.b64decode(delegation_key(account, q.get("skoid", ""), q.get("sktid", ""), q.get("skt", ""),
                                          q.get("ske", ""), q.get("skv", "")))
    try:
        given = base64.b64decode(query.get("sig", "").replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    layouts = _layouts(query.get("sv", ""))
    for layout in layouts:
        text = string_to_sign(query, resource, layout)
        if given and hmac.compare_digest(hmac.new(key, text.encode(), hashlib.sha256).digest(), given):
            return None
    return string_to_sign(query, resource, layouts[0])
