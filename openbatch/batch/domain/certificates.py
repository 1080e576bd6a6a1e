"""Certificates: add, list, get, delete, cancel deletion, and the certificate references of pools.

Deprecated by Azure (and gone from api-version 2025-06-01) but still in the 2024 spec and still
called by programs written for azure-batch 1.x - 14.x. A certificate is a document (kind
"certificate", keyed ``{algorithm}-{thumbprint}``) in the wire shape of ``Certificate`` plus what
only nodes get: ``_format`` (pfx | cer), ``_data`` (the base64 the client sent) and ``_password``.

The data is read with the ``cryptography`` package when it is added: a PFX must open with its
password and hold a certificate, a CER must be an X.509 certificate (DER or PEM), and the
thumbprint given must be the certificate's SHA-1 thumbprint (``publicData`` is that certificate,
DER, base64). States change through ``states.CERTIFICATE``: delete moves an active (or
deletefailed) certificate to deleting and asks the engine to finish; the engine removes it, or
moves it to deletefailed when a pool still references it or a node still has it installed
(``deletion_error``); cancel deletion takes a deletefailed certificate back to active.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc, now_iso
from openbatch.batch.domain.states import CERTIFICATE, CertificateState, Context
from openbatch.batch.store import BatchStore
from openbatch.batch.wire import models as m

KIND = "certificate"
ALGORITHM = "sha1"
FORMATS = ("pfx", "cer")
VISIBILITIES = ("starttask", "task", "remoteuser")
STORE_LOCATIONS = ("currentuser", "localmachine")
MAX_DATA = 10 * 1024  # "The maximum size is 10KB."
MAX_IN_ERROR = 100  # Azure lists "only about the first hundred" users of a certificate
_HEX = re.compile(r"^[0-9A-Fa-f]{1,40}$")
_C = CertificateState


def key_of(algorithm: str, thumbprint: str) -> str:
    """The store key, which is also the stem of the certificate's files on a node."""
    return f"{algorithm.lower()}-{thumbprint.lower()}"


# --- validation ------------------------------------------------------------------------------


def _thumbprint(body: Doc, key: str = "thumbprint", prop: str = "thumbprint") -> str:
    text = m.string(body, key, required=True, prop=prop) or ""
    thumbprint = text.replace(" ", "")
    if not _HEX.match(thumbprint):
        raise m.invalid(prop, text, "A thumbprint is a sequence of up to 40 hex digits.")
    return thumbprint


def _algorithm(body: Doc, prop: str = "thumbprintAlgorithm") -> str:
    algorithm = m.string(body, "thumbprintAlgorithm", required=True, prop=prop) or ""
    if algorithm.lower() != ALGORITHM:
        raise m.invalid(prop, algorithm, "The thumbprint algorithm must be sha1.")
    return ALGORITHM


def _decode(text: str) -> bytes:
    try:  # white space (line breaks of a base64 file) is skipped, as .NET's Convert.FromBase64String does
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise m.invalid("data", "data", "The certificate data must be base64.") from None
    if not data:
        raise m.missing("data")
    if len(data) > MAX_DATA:
        raise m.invalid("data", f"{len(data)} bytes", f"The certificate data may be at most {MAX_DATA} bytes.")
    return data


def _read_certificate(data: bytes, fmt: str, password: str | None) -> x509.Certificate:
    """The X.509 certificate in ``data``; InvalidPropertyValue when it cannot be read as ``fmt``."""
    if fmt == "cer":
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError:
            raise m.invalid("data", "data", "The data is not an X.509 certificate (.cer, DER or PEM).") from None
    try:
        _, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except (ValueError, TypeError):
        raise m.invalid("password" if password else "data", "***" if password else "data",
                        "The PFX could not be opened: the data is not PKCS#12 or the password is wrong.") from None
    if certificate is None:
        raise m.invalid("data", "data", "The PFX holds no certificate.")
    return certificate


def new_certificate(body: Doc, base_url: str, now: str) -> Doc:
    """Validate an add request and build the certificate document (pure)."""
    thumbprint = _thumbprint(body)
    algorithm = _algorithm(body)
    fmt = m.enum(body, "certificateFormat", FORMATS) or "pfx"
    password = m.string(body, "password", allow_empty=True)
    if fmt == "cer" and password:
        raise m.invalid("password", "***", "A password must be omitted for a certificate of format cer.")
    data_text = m.string(body, "data", required=True) or ""
    certificate = _read_certificate(_decode(data_text), fmt, password)
    actual = certificate.fingerprint(hashes.SHA1()).hex()  # the thumbprint Azure asks for, not a security hash
    if actual != thumbprint.lower():
        raise m.invalid("thumbprint", thumbprint,
                        f"The thumbprint does not match the certificate's SHA-1 thumbprint ({actual}).")
    public_data = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    return {
        "thumbprint": thumbprint, "thumbprintAlgorithm": algorithm,
        "url": f"{base_url}/certificates(thumbprintAlgorithm={algorithm},thumbprint={thumbprint})",
        "state": _C.ACTIVE.value, "stateTransitionTime": now, "publicData": public_data,
        "_format": fmt, "_data": data_text, "_password": password or None,
    }


# --- operations --------------------------------------------------------------------------------


def get_certificate(ctx: BatchContext, account: str, algorithm: str, thumbprint: str) -> Doc:
    doc = ctx.store.get(KIND, account, key_of(algorithm, thumbprint.replace(" ", "")))
    if doc is None:
        raise e.CertificateNotFound("The specified certificate does not exist.",
                                    {"Thumbprint": thumbprint, "ThumbprintAlgorithm": algorithm})
    return doc


async def add_certificate(ctx: BatchContext, account: str, body: Doc, base_url: str) -> Doc:
    doc = new_certificate(body, base_url, now_iso())
    key = key_of(doc["thumbprintAlgorithm"], doc["thumbprint"])
    existing = ctx.store.get(KIND, account, key)
    if existing is not None:
        if existing["state"] == _C.DELETING:
            raise e.CertificateBeingDeleted("The specified certificate has been marked for deletion.")
        raise e.CertificateExists("The specified certificate already exists.")
    ctx.store.put(KIND, account, doc, key=key)
    await ctx.store.flush()
    return doc


def list_certificates(ctx: BatchContext, account: str, accept: Callable[[Doc], bool], after: str | None,
                      limit: int) -> tuple[list[Doc], str | None]:
    """Certificates ``accept`` (a compiled $filter) takes, ordered by key; the next page's key or None."""
    ordered = sorted((key_of(d["thumbprintAlgorithm"], d["thumbprint"]), d) for d in ctx.store.all(KIND, account))
    page = [(k, d) for k, d in ordered if (not after or k > after.lower()) and accept(d)]
    if len(page) > limit:
        return [d for _, d in page[:limit]], page[limit - 1][0]
    return [d for _, d in page], None


async def _change(ctx: BatchContext, account: str, doc: Doc, to: CertificateState) -> Doc:
    instructions = CERTIFICATE.apply(doc, to, Context(now_iso()))
    ctx.store.put(KIND, account, doc, key=key_of(doc["thumbprintAlgorithm"], doc["thumbprint"]))
    await ctx.store.flush()
    if instructions:
        ctx.hooks.perform(account, instructions)
    return doc


async def delete_certificate(ctx: BatchContext, account: str, algorithm: str, thumbprint: str) -> Doc:
    """active / deletefailed -> deleting; the engine finishes (gone, or deletefailed if still used)."""
    doc = get_certificate(ctx, account, algorithm, thumbprint)
    if doc["state"] == _C.DELETING:
        raise e.CertificateBeingDeleted("The specified certificate has been marked for deletion.")
    return await _change(ctx, account, doc, _C.DELETING)


async def cancel_deletion(ctx: BatchContext, account: str, algorithm: str, thumbprint: str) -> Doc:
    """deletefailed -> active; an active certificate or one being deleted is refused (409)."""
    doc = get_certificate(ctx, account, algorithm, thumbprint)
    if doc["state"] == _C.ACTIVE:
        raise e.CertificateStateActive("The specified certificate is active: there is no deletion to cancel.")
    if doc["state"] == _C.DELETING:
        raise e.CertificateBeingDeleted("The specified certificate has been marked for deletion.")
    return await _change(ctx, account, doc, _C.ACTIVE)


# --- who uses a certificate ----------------------------------------------------------------------


def _names(refs: Any) -> set[str]:
    return {key_of(str(r.get("thumbprintAlgorithm", "")), str(r.get("thumbprint", "")))
            for r in refs or [] if isinstance(r, dict)}


def users(key: str, pools: Iterable[Doc], nodes_of: Callable[[str], Iterable[Doc]]) -> list[str]:
    """The pools that reference the certificate ``key``, or whose nodes still have it installed
    (nodes refresh their certificates only when they restart)."""
    found = []
    for pool in pools:
        nodes = nodes_of(str(pool["id"]))
        if key in _names(pool.get("certificateReferences")) or any(key in _names(n.get("certificateReferences"))
                                                                   for n in nodes):
            found.append(str(pool["id"]))
    return sorted(found, key=str.lower)


def deletion_error(pool_ids: list[str]) -> Doc:
    """Azure's ``deleteCertificateError`` for a certificate still in use."""
    return {"code": "PoolsReferencingCertificate",
            "message": "The specified certificate is being used by the below mentioned pool(s)",
            "values": [{"name": "Pools", "value": ",".join(pool_ids[:MAX_IN_ERROR])}]}


def finish_deletion(doc: Doc, pool_ids: list[str], now: str) -> bool:
    """What the engine does once a deletion has run its course: True when the certificate can go,
    else it moves to deletefailed with the pools that still use it."""
    if not pool_ids:
        return True
    CERTIFICATE.apply(doc, _C.DELETE_FAILED, Context(now))
    doc["deleteCertificateError"] = deletion_error(pool_ids)
    return False


# --- pools' certificate references ----------------------------------------------------------------


def _visibility(name: str, prop: str) -> str:
    if name.lower() not in VISIBILITIES:
        raise m.invalid(prop, name, f"The value must be one of: {', '.join(VISIBILITIES)}.")
    return name.lower()


def check_references(store: BatchStore, account: str, body: Doc,
                     key: str = "certificateReferences") -> list[Doc] | None:
    """A pool's ``certificateReferences``: each names an active certificate of the account
    (InvalidCertificateReferences otherwise), with Azure's defaults filled in."""
    refs = m.objects(body, key)
    if refs is None:
        return None
    out = []
    for ref in refs:
        thumbprint = _thumbprint(ref, prop=f"{key}.thumbprint")
        algorithm = _algorithm(ref, prop=f"{key}.thumbprintAlgorithm")
        location = m.enum(ref, "storeLocation", STORE_LOCATIONS, prop=f"{key}.storeLocation") or "currentuser"
        m.string(ref, "storeName", prop=f"{key}.storeName")
        visibility = [_visibility(v, f"{key}.visibility") for v in m.strings(ref, "visibility", prop=f"{key}.visibility")
                      or []]
        cert = store.get(KIND, account, key_of(algorithm, thumbprint))
        if cert is None or cert["state"] != _C.ACTIVE:
            raise e.InvalidCertificateReferences(
                "One or more certificate references are invalid: the certificate does not exist in the account "
                "or is being deleted.",
                {"PropertyName": key, "Thumbprint": thumbprint, "ThumbprintAlgorithm": algorithm})
        out.append({**ref, "thumbprint": thumbprint, "thumbprintAlgorithm": algorithm,
                    "storeLocation": location, "storeName": ref.get("storeName") or "My",
                    "visibility": visibility or list(VISIBILITIES)})  # default: every account
    return out
