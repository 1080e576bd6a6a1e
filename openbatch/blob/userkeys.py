"""Get User Delegation Key: the request body (KeyInfo) and the answer (UserDelegationKey).

The key is derived (``common/delegation.py``), never stored; its fields are the signer's object
and tenant ids from the bearer token, the start and expiry asked for (at most seven days from now,
Azure's limit), ``sks=b`` and the request's x-ms-version as ``skv``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from openbatch.blob.errors import BlobError
from openbatch.blob.wire import XML_DECL, XmlBody, XmlLimits, x
from openbatch.common import delegation
from openbatch.common.clock import parse_iso8601
from openbatch.common.identity import Principal
from openbatch.config import Account

KEY_INFO_XML = XmlLimits("KeyInfo", 4096, 2, 8, 64)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_error(name: str, value: str, reason: str) -> BlobError:
    return BlobError("InvalidXmlNodeValue", f"The value for one of the XML nodes is not in the correct format. {reason}",
                     XmlNodeName=name, XmlNodeValue=value[:64])


def parse_key_info(body: XmlBody, now: datetime) -> tuple[datetime, datetime]:
    """The start (now when not given) and expiry of the key asked for, checked as Azure does."""
    if body.root is None:
        raise BlobError("InvalidXmlDocument", "XML specified is not syntactically valid: the body is empty.")
    texts = {child.tag: (child.text or "").strip() for child in body.root}
    expiry_text = texts.get("Expiry", "")
    if not expiry_text:
        raise BlobError("InvalidXmlDocument", "XML specified is not syntactically valid: Expiry is missing.")
    expiry = parse_iso8601(expiry_text)
    if expiry is None:
        raise _node_error("Expiry", expiry_text, "It is not an ISO 8601 time.")
    start_text = texts.get("Start", "")
    start = parse_iso8601(start_text) if start_text else now
    if start is None:
        raise _node_error("Start", start_text, "It is not an ISO 8601 time.")
    if expiry <= now or expiry <= start:
        raise _node_error("Expiry", expiry_text, "The expiry must be in the future and after the start.")
    if expiry - now > delegation.MAX_KEY_LIFETIME:
        raise _node_error("Expiry", expiry_text, "The expiry must be within 7 days of the current time.")
    return start, expiry


def key_xml(account: Account, principal: Principal, start: datetime, expiry: datetime, version: str) -> bytes:
    fields = {"SignedOid": principal.object_id, "SignedTid": principal.tenant_id, "SignedStart": _time(start),
              "SignedExpiry": _time(expiry), "SignedService": "b", "SignedVersion": version}
    value = delegation.delegation_key(account, fields["SignedOid"], fields["SignedTid"], fields["SignedStart"],
                                      fields["SignedExpiry"], version)
    inner = "".join(f"<{k}>{x(v)}</{k}>" for k, v in fields.items())
    return f"{XML_DECL}<UserDelegationKey>{inner}<Value>{value}</Value></UserDelegationKey>".encode()
