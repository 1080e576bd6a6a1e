"""The Blob service's rules for names and request values shared by its domain modules (service,
copies, pages, appends): each raises Azure's error for a value Azure refuses."""

from __future__ import annotations

import base64
import binascii
import re

from openbatch.blob.errors import BlobError

MAX_BLOCK_ID_BYTES = 64
MAX_BLOB_NAME = 1024
MAX_METADATA_BYTES = 8 * 1024

_CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_SPECIAL_CONTAINERS = {"$root", "$logs", "$web"}
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PUBLIC_ACCESS = {"blob", "container"}


def check_container_name(name: str) -> None:
    if name in _SPECIAL_CONTAINERS:
        return
    if not _CONTAINER_NAME.match(name):
        raise BlobError("InvalidResourceName", "The specifed resource name contains invalid characters.")


def check_blob_name(name: str) -> None:
    if not name or len(name) > MAX_BLOB_NAME:
        raise BlobError("InvalidResourceName", "The specified resource name length is not within the permissible limits.")
    if "\x00" in name:
        raise BlobError("InvalidResourceName")


def check_metadata(metadata: dict[str, str]) -> None:
    total = 0
    for name, value in metadata.items():
        if not _METADATA_NAME.match(name):
            raise BlobError("InvalidMetadata", MetadataName=name[:256])
        total += len(name) + len(value.encode("utf-8"))
    if total > MAX_METADATA_BYTES:
        raise BlobError("MetadataTooLarge")


def check_public_access(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value.lower() not in _PUBLIC_ACCESS:
        raise BlobError("InvalidHeaderValue", HeaderName="x-ms-blob-public-access", HeaderValue=value[:64])
    return value.lower()


def check_blob_type(value: str | None) -> None:
    """Put Blob's x-ms-blob-type: required, and only block blobs are served."""
    if not value:
        raise BlobError("MissingRequiredHeader", HeaderName="x-ms-blob-type")
    if value.lower() != "blockblob":
        raise BlobError("InvalidHeaderValue", "Only block blobs are supported.", HeaderName="x-ms-blob-type",
                        HeaderValue=value[:32])


def decode_block_id(block_id: str, *, code: str = "InvalidBlockId") -> int:
    """The decoded length of a block id; raise ``code`` unless it is base64 of 1..64 bytes."""
    try:
        raw = base64.b64decode(block_id.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise BlobError(code, BlockId=block_id[:100]) from exc
    if not 0 < len(raw) <= MAX_BLOCK_ID_BYTES:
        raise BlobError(code, BlockId=block_id[:100])
    return len(raw)


def check_md5(expected: bytes | None, actual: bytes | None) -> None:
    if expected is not None and actual is not None and expected != actual:
        raise BlobError("Md5Mismatch", UserSpecifiedMd5=base64.b64encode(expected).decode(),
                        ServerCalculatedMd5=base64.b64encode(actual).decode())
