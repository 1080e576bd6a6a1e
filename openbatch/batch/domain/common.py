"""Rules shared by every Batch entity: ids, timestamps, ETags, the context operations run in."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.autoscale.samples import NoSamples, SampleSource
from openbatch.common import clock

if TYPE_CHECKING:
    from openbatch.batch.domain.applications import PackageStorage
    from openbatch.batch.domain.events import EngineHooks
    from openbatch.batch.store import BatchStore
    from openbatch.compute.base import ComputeProvider
    from openbatch.config import Settings

Doc = dict[str, Any]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class BatchContext:
    """What every domain operation runs against: settings, the store, the engine, the compute provider,
    and where the engine keeps the pools' sample histories."""

    settings: Settings
    store: BatchStore
    hooks: EngineHooks
    compute: ComputeProvider
    samples: SampleSource = field(default_factory=NoSamples)  # pools' metric histories (autoscale)
    packages: PackageStorage | None = None  # where application package zips are (None: no Blob endpoint)


def iso(when: datetime) -> str:
    """A UTC time as Azure renders it in bodies (ISO 8601; 7 fractional digits are not needed)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    """The service's current time (``clock.SERVICE``: a test may move it forward), as ``iso``."""
    return iso(clock.now())


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_last_etag = 0


def new_etag() -> str:
    """A fresh, strictly increasing ETag in Azure's ``0x8D...`` style."""
    global _last_etag
    value = max(time.time_ns() // 100 + 0x8D0000000000000, _last_etag + 1)
    _last_etag = value
    return f"0x{value:X}"


def touch(doc: Doc, now: str) -> None:
    """Mark an entity modified: new ETag and lastModified."""
    doc["eTag"] = new_etag()
    doc["lastModified"] = now


def check_id(value: Any, prop: str = "id") -> str:
    """Ids: 1-64 letters, digits, '-' or '_' (Azure's rule for pools, jobs, tasks, schedules)."""
    if value is None or value == "":
        raise e.MissingRequiredProperty(f"The property {prop} is required.", {"PropertyName": prop})
    if not isinstance(value, str) or not _ID.match(value):
        raise e.InvalidPropertyValue(
            f"The value provided for one of the properties in the request body is invalid: {prop}.",
            {"PropertyName": prop, "PropertyValue": str(value)[:100],
             "Reason": "An id can contain any combination of alphanumeric characters including hyphens and "
                       "underscores, and cannot contain more than 64 characters."},
        )
    return value


def public(doc: Doc) -> Doc:
    """The document without internal bookkeeping (keys starting with '_')."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}
