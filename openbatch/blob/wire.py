"""Blob wire format: XML bodies in and out, the headers of blobs and containers, the error renderer.

Pure translation: records in, bytes/headers out (and XML bytes in, plain values out). XML from
clients is parsed with defusedxml, incrementally and under each body's ``XmlLimits`` (size, depth,
element count, text length): anything malformed, hostile or past a limit is refused with
``InvalidXmlDocument`` (or the limit's own code) at the first violation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, tostring
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from openbatch.blob import cors
from openbatch.blob.errors import BlobError
from openbatch.blob.models import BREAKING, INFINITE, LEASED, Blob, Container, Deletion, Lease
from openbatch.blob.softdelete import check_policy, remaining_days
from openbatch.common import clock, sas
from openbatch.common.clock import from_us, iso8601, parse_iso8601, rfc1123_us

XML_DECL = '<?xml version="1.0" encoding="utf-8"?>'
XML_TYPE = "application/xml"

_STATUS = {
    "AuthenticationFailed": 403,
    "AuthorizationFailure": 403,
    "AuthorizationPermissionMismatch": 403,
    "AuthorizationProtocolMismatch": 403,
    "AuthorizationResourceTypeMismatch": 403,
    "AuthorizationServiceMismatch": 403,
    "AuthorizationSourceIPMismatch": 403,
    "NoAuthenticationInformation": 403,
    "AccountNotFound": 404,
    "BlobNotFound": 404,
    "CannotVerifyCopySource": 404,
    "ContainerNotFound": 404,
    "ResourceNotFound": 404,
    "UnsupportedHttpVerb": 405,
    "BlobAlreadyExists": 409,
    "BlobArchived": 409,
    "BlockCountExceedsLimit": 409,
    "BlobIsSealed": 409,
    "CopyIdMismatch": 409,
    "NoPendingCopyOperation": 409,
    "PendingCopyOperation": 409,
    "PreviousSnapshotNotFound": 409,
    "SequenceNumberIncrementTooLarge": 409,
    "SnapshotsPresent": 409,
    "ContainerAlreadyExists": 409,
    "ContainerBeingDeleted": 409,
    "InvalidBlobType": 409,
    "MissingContentLengthHeader": 411,
    "ConditionNotMet": 412,
    "SourceConditionNotMet": 412,
    "AppendPositionConditionNotMet": 412,
    "MaxBlobSizeConditionNotMet": 412,
    "SequenceNumberConditionNotMet": 412,
    "RequestBodyTooLarge": 413,
    "InvalidRange": 416,
    "InvalidPageRange": 416,
}

# Characters XML 1.0 cannot carry; names holding them are sent percent-encoded (Encoded="true").
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def status_of(err: BlobError) -> int:
    return err.status or _STATUS.get(err.code, 400)


def x(text: str) -> str:
    """Escape text for an XML element (names that XML cannot carry are handled by :func:`name_element`)."""
    return escape(_XML_INVALID.sub("\ufffd", text))


def name_element(name: str) -> str:
    if _XML_INVALID.search(name):
        return f'<Name Encoded="true">{escape(quote(name, safe=""))}</Name>'
    return f"<Name>{escape(name)}</Name>"


def error_body(err: BlobError, request_id: str, now_us: int) -> bytes:
    message = f"{err.message}\nRequestId:{request_id}\nTime:{iso8601(from_us(now_us))}"
    extra = "".join(f"<{k}>{x(v)}</{k}>" for k, v in err.details.items())
    return f"{XML_DECL}<Error><Code>{x(err.code)}</Code><Message>{x(message)}</Message>{extra}</Error>".encode()


def error_headers(err: BlobError) -> list[tuple[str, str]]:
    headers = [("x-ms-error-code", err.code)]
    if err.code in ("AuthenticationFailed", "NoAuthenticationInformation"):
        headers.append(("www-authenticate", "SharedKey"))
    headers += err.headers
    if err.code == "InvalidRange" and "ContentLength" in err.details:  # as HTTP and Azure say a size on 416
        headers.append(("content-range", f"bytes */{err.details['ContentLength']}"))
    return headers


# --- markers ----------------------------------------------------------------------------------


def encode_marker(name: str) -> str:
    """NextMarker values are opaque to clients: ``2!`` + base64url of the UTF-8 name."""
    return "2!" + base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def decode_marker(marker: str) -> str:
    if not marker:
        return ""
    if not marker.startswith("2!"):
        raise BlobError("OutOfRangeInput", QueryParameterName="marker", QueryParameterValue=marker[:100])
    try:
        return base64.b64decode(marker[2:].encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise BlobError("OutOfRangeInput", QueryParameterName="marker",
                        QueryParameterValue=marker[:100]) from exc


# --- headers of records -----------------------------------------------------------------------


def quoted(etag: str) -> str:
    return f'"{etag}"'


def metadata_headers(metadata: dict[str, str]) -> list[tuple[str, str]]:
    return [(f"x-ms-meta-{k}", v) for k, v in metadata.items()]


def _lease_view(lease: Lease) -> tuple[str, str, str | None]:
    """(status, state, duration or None) of a lease at the service clock's now."""
    state = lease.state_at(clock.now_us())
    duration = None
    if state == LEASED:
        duration = "infinite" if lease.duration == INFINITE else "fixed"
    return ("locked" if state in (LEASED, BREAKING) else "unlocked"), state, duration


def lease_headers(lease: Lease) -> list[tuple[str, str]]:
    status, state, duration = _lease_view(lease)
    headers = [("x-ms-lease-status", status), ("x-ms-lease-state", state)]
    if duration is not None:
        headers.append(("x-ms-lease-duration", duration))
    return headers


def lease_xml(lease: Lease) -> str:
    status, state, duration = _lease_view(lease)
    xml = f"<LeaseStatus>{status}</LeaseStatus><LeaseState>{state}</LeaseState>"
    return xml + (f"<LeaseDuration>{duration}</LeaseDuration>" if duration is not None else "")


def container_headers(c: Container) -> list[tuple[str, str]]:
    headers = [
        ("etag", quoted(c.etag)),
        ("last-modified", rfc1123_us(c.modified_us)),
        *lease_headers(c.lease),
        ("x-ms-has-immutability-policy", "false"),
        ("x-ms-has-legal-hold", "false"),
        ("x-ms-default-encryption-scope", "$account-encryption-key"),
        ("x-ms-deny-encryption-scope-override", "false"),
        *metadata_headers(c.metadata),
    ]
    if c.public_access:
        headers.append(("x-ms-blob-public-access", c.public_access))
    return headers


def blob_headers(b: Blob, *, full_md5: bool) -> list[tuple[str, str]]:
    """Headers of Get Blob / Get Blob Properties (without Content-Length / Content-Range)."""
    c = b.content
    headers = [
        ("last-modified", rfc1123_us(b.modified_us)),
        ("x-ms-creation-time", rfc1123_us(b.created_us)),
        ("etag", quoted(b.etag)),
        ("content-type", c.content_type or "application/octet-stream"),
        ("x-ms-blob-type", b.blob_type),
        *type_headers(b),
        *lease_headers(b.lease),
        ("x-ms-server-encrypted", "true"),
        ("accept-ranges", "bytes"),
        *metadata_headers(b.metadata),
    ]
    for name, value in (("content-encoding", c.content_encoding), ("content-language", c.content_language),
                        ("cache-control", c.cache_control), ("content-disposition", c.content_disposition)):
        if value:
            headers.append((name, value))
    if c.content_md5 is not None:
        md5 = base64.b64encode(c.content_md5).decode("ascii")
        headers.append(("content-md5" if full_md5 else "x-ms-blob-content-md5", md5))
    if b.copy is not None:
        headers += [
            ("x-ms-copy-id", b.copy.copy_id),
            ("x-ms-copy-source", b.copy.source),
            ("x-ms-copy-status", b.copy.status),
            ("x-ms-copy-progress", b.copy.progress),
        ]
        if b.copy.completed_us is not None:
            headers.append(("x-ms-copy-completion-time", rfc1123_us(b.copy.completed_us)))
        if b.copy.description:
            headers.append(("x-ms-copy-status-description", b.copy.description))
    if b.version_id is not None:
        headers += [("x-ms-version-id", b.version_id), ("x-ms-is-current-version", "true" if b.is_base else "false")]
    if b.tag_count:
        headers.append(("x-ms-tag-count", str(b.tag_count)))
    return headers


def type_headers(b: Blob) -> list[tuple[str, str]]:
    """What page and append blobs report besides their type: the sequence number, the committed
    block count (when the service counted it) and whether the blob is sealed."""
    if b.blob_type == "PageBlob":
        return [("x-ms-blob-sequence-number", str(b.sequence_number))]
    if b.blob_type != "AppendBlob":
        return []
    headers = [("x-ms-blob-committed-block-count", str(b.committed_blocks))] if b.committed_blocks is not None else []
    if b.sealed:
        headers.append(("x-ms-blob-sealed", "true"))
    return headers


def tier_headers(b: Blob) -> list[tuple[str, str]]:
    """The access tier headers of Get Blob Properties (an unset tier is the account default, Hot);
    only block blobs have tiers on a standard account."""
    if b.blob_type != "BlockBlob":
        return []
    if b.tier is None:
        return [("x-ms-access-tier", "Hot"), ("x-ms-access-tier-inferred", "true")]
    headers = [("x-ms-access-tier", b.tier)]
    if b.tier_changed_us is not None:
        headers.append(("x-ms-access-tier-change-time", rfc1123_us(b.tier_changed_us)))
    if b.rehydration is not None:
        headers += [("x-ms-archive-status", f"rehydrate-pending-to-{b.rehydration.tier.lower()}"),
                    ("x-ms-rehydrate-priority", b.rehydration.priority)]
    return headers


# --- listings ---------------------------------------------------------------------------------


def _opt(tag: str, value: str | None) -> str:
    return f"<{tag}>{x(value)}</{tag}>" if value else ""


def _metadata_xml(metadata: dict[str, str]) -> str:
    return "<Metadata>" + "".join(f"<{k}>{x(v)}</{k}>" for k, v in metadata.items()) + "</Metadata>"


def list_containers_xml(endpoint: str, prefix: str, marker: str, maxresults: str, items: Iterable[Container],
                        next_marker: str, include_metadata: bool) -> bytes:
    out = [XML_DECL, f'<EnumerationResults ServiceEndpoint="{x(endpoint)}">',
           _opt("Prefix", prefix), _opt("Marker", marker), _opt("MaxResults", maxresults), "<Containers>"]
    for c in items:
        deleted = ""
        if c.deleted is not None:  # a soft-deleted container: stored as "name\0version"
            deleted = f"<Deleted>true</Deleted><Version>{x(c.deleted.version)}</Version>"
        out.append(f"<Container><Name>{x(c.name.partition(chr(0))[0])}</Name>{deleted}<Properties>"
                   f"<Last-Modified>{rfc1123_us(c.modified_us)}</Last-Modified><Etag>{quoted(c.etag)}</Etag>"
                   + lease_xml(c.lease))
        if c.public_access:
            out.append(f"<PublicAccess>{c.public_access}</PublicAccess>")
        out.append("<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>"
                   f"{_deletion_xml(c.deleted)}</Properties>")
        if include_metadata:
            out.append(_metadata_xml(c.metadata))
        out.append("</Container>")
    out.append(f"</Containers><NextMarker>{x(next_marker)}</NextMarker></EnumerationResults>")
    return "".join(out).encode("utf-8")


def _deletion_xml(deleted: Deletion | None) -> str:
    if deleted is None:
        return ""
    return (f"<DeletedTime>{rfc1123_us(deleted.at_us)}</DeletedTime>"
            f"<RemainingRetentionDays>{remaining_days(deleted, clock.now_us())}</RemainingRetentionDays>")


def _tier_xml(b: Blob) -> str:
    if b.tier is None:
        return "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
    changed = b.tier_changed_us
    xml = f"<AccessTier>{b.tier}</AccessTier>" + (
        f"<AccessTierChangeTime>{rfc1123_us(changed)}</AccessTierChangeTime>" if changed is not None else "")
    if b.rehydration is not None:
        xml += (f"<ArchiveStatus>rehydrate-pending-to-{b.rehydration.tier.lower()}</ArchiveStatus>"
                f"<RehydratePriority>{b.rehydration.priority}</RehydratePriority>")
    return xml


def _blob_xml(b: Blob, include_metadata: bool) -> str:
    c = b.content
    md5 = base64.b64encode(c.content_md5).decode("ascii") if c.content_md5 is not None else ""
    props = (
        f"<Creation-Time>{rfc1123_us(b.created_us)}</Creation-Time>"
        f"<Last-Modified>{rfc1123_us(b.modified_us)}</Last-Modified><Etag>{b.etag}</Etag>"
        f"<Content-Length>{b.size}</Content-Length><Content-Type>{x(c.content_type)}</Content-Type>"
        f"<Content-Encoding>{x(c.content_encoding)}</Content-Encoding>"
        f"<Content-Language>{x(c.content_language)}</Content-Language><Content-CRC64 />"
        f"<Content-MD5>{md5}</Content-MD5><Cache-Control>{x(c.cache_control)}</Cache-Control>"
        f"<Content-Disposition>{x(c.content_disposition)}</Content-Disposition>"
        f"<BlobType>{b.blob_type}</BlobType>"
    )
    if b.blob_type == "PageBlob":
        props += f"<x-ms-blob-sequence-number>{b.sequence_number}</x-ms-blob-sequence-number>"
    elif b.blob_type == "AppendBlob":
        props += f"<Sealed>{'true' if b.sealed else 'false'}</Sealed>"
    if b.committed and b.blob_type == "BlockBlob":  # (only block blobs have tiers on a standard account)
        props += _tier_xml(b)
    props += lease_xml(b.lease) + "<ServerEncrypted>true</ServerEncrypted>"
    if b.tag_count:
        props += f"<TagCount>{b.tag_count}</TagCount>"
    props += _deletion_xml(b.deleted)
    if b.copy is not None:
        props += (f"<CopyId>{b.copy.copy_id}</CopyId><CopySource>{x(b.copy.source)}</CopySource>"
                  f"<CopyStatus>{b.copy.status}</CopyStatus><CopyProgress>{b.copy.progress}</CopyProgress>")
        if b.copy.completed_us is not None:
            props += f"<CopyCompletionTime>{rfc1123_us(b.copy.completed_us)}</CopyCompletionTime>"
        if b.copy.description:
            props += f"<CopyStatusDescription>{x(b.copy.description)}</CopyStatusDescription>"
    meta = _metadata_xml(b.metadata) if include_metadata else ""
    ids = ""
    if b.snapshot is not None:
        ids = f"<Snapshot>{b.snapshot}</Snapshot>"
    if b.version_id is not None and not b.snapshot:
        ids += f"<VersionId>{b.version_id}</VersionId>"
        if b.is_base:
            ids += "<IsCurrentVersion>true</IsCurrentVersion>"
    tags = f"<Tags>{_tag_set(b.tags)}</Tags>" if b.tags else ""
    deleted = "<Deleted>true</Deleted>" if b.deleted is not None else ""
    return f"<Blob>{name_element(b.name)}{deleted}{ids}<Properties>{props}</Properties>{meta}{tags}</Blob>"


# --- blob index tags ----------------------------------------------------------------------------------


def _tag_set(tags: dict[str, str]) -> str:
    return "<TagSet>" + "".join(f"<Tag><Key>{x(k)}</Key><Value>{x(v)}</Value></Tag>" for k, v in tags.items()) \
        + "</TagSet>"


def tags_xml(tags: dict[str, str]) -> bytes:
    """Get Blob Tags."""
    return f"{XML_DECL}<Tags>{_tag_set(tags)}</Tags>".encode()


def parse_tags(body: XmlBody) -> list[tuple[str, str]]:
    """A Set Blob Tags body: ``<Tags><TagSet><Tag><Key/><Value/></Tag>...`` (an empty body: no tags)."""
    if body.root is None:
        return []
    tag_set = body.root.find("TagSet")
    pairs = []
    for tag in tag_set if tag_set is not None else []:
        if tag.tag != "Tag":
            raise BlobError("InvalidXmlDocument", f"Unexpected element <{str(tag.tag)[:64]}> in the tag set.")
        pairs.append((tag.findtext("Key") or "", tag.findtext("Value") or ""))
    return pairs


def found_blobs_xml(endpoint: str, where: str, found: Iterable[tuple[str, str, dict[str, str]]],
                    next_marker: str) -> bytes:
    """Find Blobs by Tags: each match's name, container and the tags the expression names."""
    out = [XML_DECL, f'<EnumerationResults ServiceEndpoint="{x(endpoint)}"><Where>{x(where)}</Where><Blobs>']
    for container, name, tags in found:
        out.append(f"<Blob>{name_element(name)}<ContainerName>{x(container)}</ContainerName>"
                   f"<Tags>{_tag_set(tags)}</Tags></Blob>")
    out.append(f"</Blobs><NextMarker>{x(next_marker)}</NextMarker></EnumerationResults>")
    return "".join(out).encode("utf-8")


def list_blobs_xml(endpoint: str, container: str, prefix: str, marker: str, maxresults: str, delimiter: str,
                   items: Iterable[Blob | str], next_marker: str, include_metadata: bool) -> bytes:
    out = [XML_DECL, f'<EnumerationResults ServiceEndpoint="{x(endpoint)}" ContainerName="{x(container)}">',
           _opt("Prefix", prefix), _opt("Marker", marker), _opt("MaxResults", maxresults),
           _opt("Delimiter", delimiter), "<Blobs>"]
    for item in items:
        if isinstance(item, str):
            out.append(f"<BlobPrefix>{name_element(item)}</BlobPrefix>")
        else:
            out.append(_blob_xml(item, include_metadata))
    out.append(f"</Blobs><NextMarker>{x(next_marker)}</NextMarker></EnumerationResults>")
    return "".join(out).encode("utf-8")


def block_list_xml(committed: Iterable[tuple[str, int]] | None, uncommitted: Iterable[tuple[str, int]] | None) -> bytes:
    out = [XML_DECL, "<BlockList>"]
    for tag, blocks in (("CommittedBlocks", committed), ("UncommittedBlocks", uncommitted)):
        if blocks is None:
            continue
        out.append(f"<{tag}>")
        out.extend(f"<Block><Name>{x(i)}</Name><Size>{s}</Size></Block>" for i, s in blocks)
        out.append(f"</{tag}>")
    out.append("</BlockList>")
    return "".join(out).encode("utf-8")


def page_list_xml(ranges: Iterable[tuple[int, int]], clears: Iterable[tuple[int, int]], next_marker: str) -> bytes:
    """Get Page Ranges: ``<PageRange>`` (and, for a diff, ``<ClearRange>``) by offset, inclusive ends."""
    tagged = sorted([(s, e, "PageRange") for s, e in ranges] + [(s, e, "ClearRange") for s, e in clears])
    out = [XML_DECL, "<PageList>"]
    out.extend(f"<{tag}><Start>{s}</Start><End>{e}</End></{tag}>" for s, e, tag in tagged)
    if next_marker:
        out.append(f"<NextMarker>{x(next_marker)}</NextMarker>")
    out.append("</PageList>")
    return "".join(out).encode("utf-8")


def service_stats_xml(now_us: int) -> bytes:
    """Get Blob Service Stats: geo-replication live, synced up to now."""
    return (f"{XML_DECL}<StorageServiceStats><GeoReplication><Status>live</Status>"
            f"<LastSyncTime>{rfc1123_us(now_us)}</LastSyncTime></GeoReplication></StorageServiceStats>").encode()


DEFAULT_SERVICE_PROPERTIES = (
    XML_DECL + "<StorageServiceProperties>"
    "<Logging><Version>1.0</Version><Delete>false</Delete><Read>false</Read><Write>false</Write>"
    "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>"
    "<HourMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled>"
    "</RetentionPolicy></HourMetrics>"
    "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled>"
    "</RetentionPolicy></MinuteMetrics>"
    "<Cors />"
    "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>"
    "<StaticWebsite><Enabled>false</Enabled></StaticWebsite>"
    "</StorageServiceProperties>"
)


# --- parsing: every XML body the endpoint reads, with Azure's limits -----------------------------


@dataclass(frozen=True)
class XmlLimits:
    """What one kind of XML request body may hold. A body past any limit is refused at the first
    violation, while it is still being received (the rest is never parsed)."""

    root: str
    max_body: int  # bytes; a larger Content-Length is refused before the body is read (413)
    max_depth: int  # element nesting, the root being 1
    max_elements: int  # elements below the root
    max_text: int  # characters of text in one element
    too_many: str = "InvalidXmlDocument"  # the error code for more than max_elements


# Put Block List: at most 50,000 blocks, each <Latest|Committed|Uncommitted> with a base64 id of
# at most 64 bytes (~115 bytes an entry): 8 MiB leaves room for whitespace.
BLOCK_LIST_XML = XmlLimits("BlockList", 8 << 20, 2, 50_000, 1024, too_many="BlockListTooLong")
# Set Container ACL: at most 5 identifiers (SignedIdentifier/AccessPolicy/Start: depth 4).
ACL_XML = XmlLimits("SignedIdentifiers", 1 << 20, 4, 256, 1024)
# Set Blob Tags: at most 10 tags (Tags/TagSet/Tag/Key: depth 4); more elements than that allows are
# more tags than Azure takes.
TAGS_XML = XmlLimits("Tags", 64 << 10, 4, 64, 1024, too_many="TagsTooLarge")
# Set Blob Service Properties: logging, metrics, at most 5 CORS rules (each list <= 64 items).
SERVICE_PROPERTIES_XML = XmlLimits("StorageServiceProperties", 1 << 20, 6, 2048, 64 << 10)
PARSE_INLINE = 64 << 10  # bodies up to this size are parsed on the event loop; beyond, in a thread


class _Refused(Exception):
    """A limit was passed: carries the BlobError to answer (raised out of the parser's callbacks)."""

    def __init__(self, error: BlobError) -> None:
        super().__init__(error.message)
        self.error = error


class _LimitedBuilder:
    """An ElementTree builder that refuses, at once, what the limits do not allow."""

    def __init__(self, limits: XmlLimits) -> None:
        self.limits = limits
        self.tree = TreeBuilder()
        self.depth = self.elements = self.text = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        self.text = 0
        lim = self.limits
        if self.depth == 1 and tag != lim.root:
            raise _Refused(BlobError("InvalidXmlDocument", f"XML root element must be <{lim.root}>."))
        if self.depth > lim.max_depth:
            raise _Refused(BlobError("InvalidXmlDocument", f"<{lim.root}> elements nest at most "
                                                           f"{lim.max_depth} levels deep."))
        if self.depth > 1:
            self.elements += 1
            if self.elements > lim.max_elements:
                raise _Refused(BlobError(lim.too_many) if lim.too_many != "InvalidXmlDocument" else BlobError(
                    "InvalidXmlDocument", f"<{lim.root}> holds at most {lim.max_elements} elements."))
        self.tree.start(tag, attrs)

    def end(self, tag: str) -> None:
        self.depth -= 1
        self.tree.end(tag)

    def data(self, text: str) -> None:
        self.text += len(text)
        if self.text > self.limits.max_text:
            raise _Refused(BlobError("InvalidXmlDocument", f"An element of <{self.limits.root}> holds at most "
                                                           f"{self.limits.max_text} characters."))
        self.tree.data(text)

    def close(self) -> Element:
        return self.tree.close()


@dataclass
class XmlBody:
    root: Element | None  # None: the body was empty (or only whitespace)
    raw: bytes
    md5: bytes


class XmlReader:
    """Incremental, defused parsing of one request body under ``limits``: feed() chunks as they
    arrive, then close(). Any violation raises BlobError from the feed() that meets it."""

    def __init__(self, limits: XmlLimits) -> None:
        self.limits = limits
        self.size = 0
        self._chunks: list[bytes] = []
        self._md5 = hashlib.md5()
        self._started = False
        self._parser = DefusedXMLParser(target=_LimitedBuilder(limits))

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_body:
            raise BlobError("RequestBodyTooLarge", MaxLimit=str(self.limits.max_body))
        self._chunks.append(chunk)
        self._md5.update(chunk)
        if not self._started:
            if not chunk.strip():
                return
            self._started = True
            chunk = b"".join(self._chunks)
        self._guarded(self._parser.feed, chunk)

    def close(self) -> XmlBody:
        raw = b"".join(self._chunks)
        root = self._guarded(self._parser.close) if self._started else None
        return XmlBody(root, raw, self._md5.digest())

    @staticmethod
    def _guarded(step: Callable[..., Any], *args: Any) -> Any:
        try:
            return step(*args)
        except _Refused as exc:
            raise exc.error from None
        except (ParseError, DefusedXmlException, ValueError, UnicodeError) as exc:
            raise BlobError("InvalidXmlDocument",
                            f"XML specified is not syntactically valid: {type(exc).__name__}.") from None


async def read_xml(chunks: AsyncIterator[bytes], limits: XmlLimits) -> XmlBody:
    """Parse a request body as it arrives. Chunks past the first PARSE_INLINE bytes are parsed in a
    worker thread, so one big body does not hold the event loop (and every other request)."""
    reader = XmlReader(limits)
    async for chunk in chunks:
        if reader.size + len(chunk) <= PARSE_INLINE:
            reader.feed(chunk)
        else:
            await asyncio.to_thread(reader.feed, chunk)
    if reader.size > PARSE_INLINE:
        return await asyncio.to_thread(reader.close)
    return reader.close()


def parse_block_list(body: XmlBody) -> list[tuple[str, str]]:
    """``<BlockList><Latest>id</Latest>...`` -> ``[("Latest", id), ...]`` in document order."""
    if body.root is None:
        raise BlobError("InvalidXmlDocument", "XML specified is not syntactically valid: the body is empty.")
    entries = []
    for child in body.root:
        if child.tag not in ("Committed", "Uncommitted", "Latest"):
            raise BlobError("InvalidXmlDocument", f"Unexpected element <{str(child.tag)[:64]}> in the block list.")
        entries.append((str(child.tag), (child.text or "").strip()))
    return entries


def _text(body: XmlBody) -> str:
    try:
        return body.raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BlobError("InvalidXmlDocument", "The XML body must be encoded as UTF-8.") from None


def parse_service_properties(body: XmlBody) -> str:
    """Validate a Set Service Properties body (its CORS rules); return it as text to store."""
    if body.root is None:
        raise BlobError("InvalidXmlDocument", "XML specified is not syntactically valid: the body is empty.")
    cors.check_rules(body.root)
    check_policy(body.root)
    return _text(body)


def merge_service_properties(stored: str | None, new: str) -> str:
    """Stored service properties with the top-level elements of a new document put in their place
    (or added): what the new document omits is kept."""
    if not stored:
        return new
    old_root, new_root = (DefusedXMLParser(target=TreeBuilder()) for _ in range(2))
    old_root.feed(stored.encode("utf-8"))
    new_root.feed(new.encode("utf-8"))
    merged, incoming = old_root.close(), new_root.close()
    for element in incoming:
        existing = merged.find(str(element.tag))
        if existing is not None:
            merged.remove(existing)
        merged.append(element)
    return XML_DECL + tostring(merged, encoding="unicode")


def parse_signed_identifiers(body: XmlBody) -> str:
    """Validate a Set Container ACL body (at most 5 identifiers); return it as text to store."""
    if body.root is None:
        return ""
    identifiers = [c for c in body.root if c.tag == "SignedIdentifier"]
    if len(identifiers) > 5:
        raise BlobError("InvalidXmlDocument", "At most 5 signed identifiers are allowed.")
    for ident in identifiers:
        ident_id = ident.findtext("Id") or ""
        if not ident_id or len(ident_id) > 64:
            raise BlobError("InvalidXmlDocument", "Each signed identifier needs an Id of at most 64 characters.")
        _check_access_policy(ident.find("AccessPolicy"))
    return _text(body)


def _check_access_policy(policy: Element | None) -> None:
    """Start and Expiry are ISO 8601 times, Permission service SAS letters (400 InvalidXmlNodeValue)."""
    if policy is None:
        return
    for tag in ("Start", "Expiry"):
        value = (policy.findtext(tag) or "").strip()
        if value and parse_iso8601(value) is None:
            raise _bad_node(tag, value)
    letters = (policy.findtext("Permission") or "").strip()
    if not set(letters) <= sas.SERVICE_PERMISSIONS:
        raise _bad_node("Permission", letters)


def _bad_node(tag: str, value: str) -> BlobError:
    return BlobError("InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format.",
                     XmlNodeName=tag, XmlNodeValue=value[:64])


@lru_cache(maxsize=256)
def stored_policies(acl: str) -> dict[str, sas.StoredPolicy]:
    """The stored access policies of a container ACL as stored (validated when it was set), by id."""
    if not acl:
        return {}
    parser = DefusedXMLParser(target=TreeBuilder())
    parser.feed(acl.encode("utf-8"))
    policies: dict[str, sas.StoredPolicy] = {}
    for ident in parser.close():
        policy = ident.find("AccessPolicy")
        fields = [((policy.findtext(t) or "").strip() or None) if policy is not None else None
                  for t in ("Start", "Expiry", "Permission")]
        policies[ident.findtext("Id") or ""] = sas.StoredPolicy(*fields)
    return policies


def signed_identifiers_xml(acl: str) -> bytes:
    if not acl:
        return (XML_DECL + "<SignedIdentifiers />").encode()
    return acl.encode("utf-8")
