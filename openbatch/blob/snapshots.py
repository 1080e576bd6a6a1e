"""Snapshots and versions: read-only records of a blob's earlier states, sharing its extents.

A snapshot (Snapshot Blob) or a previous version (kept by every Put Blob, Put Block List, Copy
Blob and Set Blob Metadata while versioning is on) is a row of ``blobs`` with the base blob's name
and a ``stamp`` (``SNAPSHOT`` or ``VERSION`` + its id); its parts are rows of ``parts`` naming the
same extents as the blob had, so taking one moves no bytes, and an extent is deleted only when no
base blob, snapshot or version references it any more. Ids are Azure's DateTime form with seven
fractional digits (``2026-12-03T16:04:32.1234560Z``), unique and increasing within this server.

Versioning is switched on per account by ``<IsVersioningEnabled>true</IsVersioningEnabled>`` in
the Blob service properties (Azure's management-plane setting of that name; the data-plane SDKs
cannot send it, so it is set with a raw Set Blob Service Properties or ``openbatch blob versioning
on``); a later document without the element leaves it as it was (Set Blob Service Properties
merges, as Azure does).

Rules only: knows no HTTP; runs inside the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import replace

from defusedxml import ElementTree

from openbatch.blob.errors import BlobError, bad_query
from openbatch.blob.models import SNAPSHOT, VERSION, Blob, Lease
from openbatch.blob.store import MetaStore
from openbatch.common.clock import from_us, now_us

_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$")
_last_us = 0
INCLUDE_SNAPSHOTS = "include"  # x-ms-delete-snapshots values
ONLY_SNAPSHOTS = "only"


def stamp_of(snapshot: str | None, version_id: str | None) -> str:
    """The record a request addresses with ``?snapshot=`` / ``?versionid=`` ("" for the base blob)."""
    if snapshot and version_id:
        raise bad_query("versionid", version_id[:64], "A request may name a snapshot or a version, not both.")
    for name, value, prefix in (("snapshot", snapshot, SNAPSHOT), ("versionid", version_id, VERSION)):
        if value is None or value == "":
            continue
        if not _ID.match(value):
            raise bad_query(name, value[:64])
        return prefix + value
    return ""


def new_id() -> str:
    """A fresh snapshot / version id: the service clock's time, strictly after the last one issued."""
    global _last_us
    _last_us = max(now_us(), _last_us + 1)
    return id_of(_last_us)


def id_of(us: int) -> str:
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def find(meta: MetaStore, container_id: int, name: str, stamp: str) -> Blob | None:
    """The record ``stamp`` names: a snapshot, a previous version, or the base blob (also when a
    version id names the current version)."""
    found = meta.get_blob(container_id, name, stamp)
    if found is None and stamp.startswith(VERSION):
        base = meta.get_blob(container_id, name)
        if base is not None and base.version_id == stamp[1:]:
            return base
    return found


def take_snapshot(meta: MetaStore, blob: Blob, metadata: dict[str, str] | None) -> Blob:
    """Snapshot Blob: a read-only copy of ``blob`` as it is now (its metadata, or ``metadata``)."""
    snap = _frozen(blob, SNAPSHOT + new_id())
    if metadata is not None:
        snap.metadata = metadata
    meta.save_blob(snap)
    meta.copy_parts(blob.id, snap.id)
    return snap


def keep_version(meta: MetaStore, blob: Blob, *, content_replaced: bool) -> Blob:
    """Keep ``blob`` as it is now as a previous version before a write changes it. Its parts move to
    the version when the write replaces the content, and are shared otherwise. A blob written
    before versioning was switched on gets the id of its last modification."""
    version_id = blob.version_id or id_of(blob.modified_us)
    version = _frozen(blob, VERSION + version_id)
    version.version_id = version_id
    meta.save_blob(version)
    if content_replaced:
        meta.move_parts(blob.id, version.id)
    else:
        meta.copy_parts(blob.id, version.id)
    return version


def _frozen(blob: Blob, stamp: str) -> Blob:
    return replace(blob, id=0, stamp=stamp, staged_count=0, lease=Lease(), committed_blocks=None,
                   metadata=dict(blob.metadata))


class Versioning:
    """Which accounts keep versions (from their stored service properties), and what a write or a
    delete of a blob does about versions. Runs inside the caller's transaction."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self.on = {account: bool(versioning_setting(body)) for account, body in meta.all_service_properties().items()}

    def stored(self, account: str, body: str) -> None:
        """The account's service properties are now ``body`` (as stored: merged with what was)."""
        self.on[account] = bool(versioning_setting(body))

    def kept_by(self, container_id: int) -> bool:
        """Does the account of this container keep versions?"""
        if not any(self.on.values()):
            return False
        return self.on.get(self.meta.container_account(container_id) or "", False)

    def before_write(self, blob: Blob, old: Blob | None, *, content_replaced: bool) -> None:
        """Before ``blob`` is written over ``old`` (itself before this write): ``old`` stays as a
        previous version when versioning is on or when it is a version (it has a version id: it
        was written while versioning was on, since switched off); the new content is a version,
        with a new id, only while versioning is on."""
        on = self.kept_by(blob.container_id)
        if old is not None and old.committed and (on or old.version_id is not None):
            keep_version(self.meta, old, content_replaced=content_replaced)
        if on or blob.version_id is not None:
            blob.version_id = new_id() if on else None
            self.meta.save_blob(blob)

    def before_delete(self, blob: Blob) -> None:
        """A base blob about to be deleted stays as a previous version (versioning on, or it is one)."""
        if blob.is_base and (blob.version_id is not None or self.kept_by(blob.container_id)):
            keep_version(self.meta, blob, content_replaced=True)


def check_delete_snapshots(value: str | None, stamp: str) -> str | None:
    """x-ms-delete-snapshots: ``include`` / ``only``, and only on the base blob."""
    if value is None or value == "":
        return None
    if value not in (INCLUDE_SNAPSHOTS, ONLY_SNAPSHOTS):
        raise BlobError("InvalidHeaderValue", HeaderName="x-ms-delete-snapshots", HeaderValue=value[:32])
    if stamp:
        raise BlobError("InvalidQueryParameterValue", "x-ms-delete-snapshots applies to the base blob only.",
                        QueryParameterName="snapshot" if stamp.startswith(SNAPSHOT) else "versionid",
                        QueryParameterValue=stamp[1:])
    return value


def versioning_setting(service_properties: str | None) -> bool | None:
    """What stored or sent Blob service properties say of versioning (None: nothing)."""
    if not service_properties or "IsVersioningEnabled" not in service_properties:
        return None
    root = ElementTree.fromstring(service_properties.encode("utf-8"))
    value = root.findtext("IsVersioningEnabled")
    return None if value is None else value.strip().lower() == "true"
