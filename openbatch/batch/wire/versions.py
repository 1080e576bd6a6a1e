"""Batch api-versions: one internal model, translated at the wire edge.

Every entity is held internally in the modern wire shape (api-version 2024-07-01.20.0 /
2025-06-01, the field names of azure-batch 14.x/15.x).  Clients of older generations send and
expect older field names; ``to_internal`` translates their request bodies to the modern shape
and ``from_internal`` translates a modern document to what the asked-for version returns.
Fields an older version does not know are left in place: the older SDKs (msrest) ignore
unknown properties, so only *renamed* or *reshaped* fields need translating.

The differences were established by diffing the msrest ``_attribute_map`` of every model in
azure-batch 1.0.0 (api-version 2016-07-01.3.1) against the ``rest_field`` names of
azure-batch 15.1.0 (and 14.2.0, which only adds/removes fields); the version each change
landed in comes from the azure-batch changelog:

==================  ==========================================================================
2016-07-01.3.1      job ``onAllTasksComplete`` / ``onTaskFailure`` spelt ``noAction``,
                    ``terminateJob``, ``performExitOptionsJobAction`` (later all lower-case)
2017-01-01.4.0      ``runElevated`` (bool) on every task kind -> ``userIdentity.autoUser.
                    elevationLevel`` (admin / nonadmin)                        [azure-batch 2.0]
2017-05-01.5.0      pool ``targetDedicated`` / ``currentDedicated`` -> ``targetDedicatedNodes`` /
                    ``currentDedicatedNodes`` (also pool specs and resize); ``resizeError`` ->
                    ``resizeErrors`` (list); ``schedulingError`` on task execution infos ->
                    ``failureInfo``; ``exitConditions.schedulingError`` -> ``preProcessingError``
                                                                               [azure-batch 3.0]
2018-08-01.7.0      ``validationStatus`` dropped from task counts              [azure-batch 5.0]
2018-12-01.8.0      resource file ``blobSource`` -> ``httpUrl`` (+ container sources); pool usage
                    metrics lose ``dataIngressGiB`` / ``dataEgressGiB``        [azure-batch 6.0]
2019-06-01.9.0      ``GET /nodeagentskus`` -> ``GET /supportedimages``         [azure-batch 7.0]
2020-09-01.12.0     pool ``maxTasksPerNode`` -> ``taskSlotsPerNode``; ``/taskcounts`` returns
                    ``{taskCounts, taskSlotCounts}`` instead of the bare counts [azure-batch 10.0]
==================  ==========================================================================

Nested objects are translated wherever they occur (start tasks in pools, pool specifications,
nodes; job manager / preparation / release tasks in jobs and job schedules; resource files;
execution infos ...), driven by the small schema ``_TYPES`` below.  Sub-objects a translation
does not touch are shared with the input rather than copied.

Order of work in an api module: ``parse_api_version``; ``to_internal`` the body; for lists
``filter_to_internal`` the ``$filter`` text (then ``odata.parse_filter``) and evaluate it on the
internal documents; ``from_internal`` each document; ``$select`` can then be applied to the
translated document with the client's own names (or, after ``filter_to_internal``, to the
internal one before translating).  Versions before 2019-06-01.9.0 list images through
``GET /nodeagentskus``: serve ``node_agent_skus(supported_images)`` there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

__all__ = [
    "ApiVersion",
    "InvalidApiVersion",
    "MissingApiVersion",
    "V2016_07_01",
    "V_USER_IDENTITY",
    "V_DEDICATED_NODES",
    "V_TASK_COUNTS_NO_VALIDATION",
    "V_HTTP_URL",
    "V_SUPPORTED_IMAGES",
    "V_TASK_SLOTS",
    "LATEST",
    "KINDS",
    "filter_to_internal",
    "from_internal",
    "node_agent_skus",
    "parse_api_version",
    "to_internal",
]


class InvalidApiVersion(ValueError):
    """A malformed api-version (400 InvalidQueryParameterValue)."""


class MissingApiVersion(InvalidApiVersion):
    """No api-version at all (400 MissingRequiredQueryParameter)."""


_VERSION_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:\.(\d{1,4})(?:\.(\d{1,4}))?)?(-preview)?")


@dataclass(frozen=True, order=True)
class ApiVersion:
    """A Batch api-version such as ``2016-07-01.3.1`` or ``2025-06-01``; ordered by date."""

    day: date
    service: tuple[int, ...] = ()
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text


def parse_api_version(text: str | None) -> ApiVersion:
    """Parse the ``api-version`` query parameter.

    Raises MissingApiVersion when absent or empty and InvalidApiVersion (a ValueError) when
    malformed.  Versions newer than any known are accepted (and treated as the latest).
    """
    if text is None or not text.strip():
        raise MissingApiVersion("The api-version query parameter is required")
    text = text.strip()
    m = _VERSION_RE.fullmatch(text)
    if m is None:
        raise InvalidApiVersion(f"The api-version {text!r} is not a valid Batch api-version")
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise InvalidApiVersion(f"The api-version {text!r} is not a valid Batch api-version") from None
    service = tuple(int(part) for part in (m[4], m[5]) if part is not None)
    return ApiVersion(day, service, text)


V2016_07_01 = parse_api_version("2016-07-01.3.1")  # azure-batch 1.x, the oldest generation served
V_USER_IDENTITY = parse_api_version("2017-01-01.4.0")
V_DEDICATED_NODES = parse_api_version("2017-05-01.5.0")
V_TASK_COUNTS_NO_VALIDATION = parse_api_version("2018-08-01.7.0")
V_HTTP_URL = parse_api_version("2018-12-01.8.0")
V_SUPPORTED_IMAGES = parse_api_version("2019-06-01.9.0")
V_TASK_SLOTS = parse_api_version("2020-09-01.12.0")
LATEST = parse_api_version("2025-06-01")


# --------------------------------------------------------------------------------------------
# Rules: each applies to versions older than ``before`` and edits a (copied) dict in place.
# --------------------------------------------------------------------------------------------

Doc = dict[str, Any]


@dataclass(frozen=True)
class _Rule:
    before: ApiVersion

    def inbound(self, doc: Doc) -> None:
        """Old names -> modern names (request bodies)."""

    def outbound(self, doc: Doc) -> None:
        """Modern names -> old names (responses)."""


@dataclass(frozen=True)
class _Rename(_Rule):
    old: str = ""
    new: str = ""

    def inbound(self, doc: Doc) -> None:
        if self.old in doc:
            value = doc.pop(self.old)
            doc.setdefault(self.new, value)

    def outbound(self, doc: Doc) -> None:
        if self.new in doc:
            doc[self.old] = doc.pop(self.new)


@dataclass(frozen=True)
class _RunElevated(_Rule):
    """``runElevated: true`` <-> ``userIdentity: {autoUser: {elevationLevel: admin}}``."""

    def inbound(self, doc: Doc) -> None:
        if "runElevated" not in doc:
            return
        elevated = doc.pop("runElevated")
        if "userIdentity" not in doc:
            level = "admin" if elevated is True else "nonadmin"
            doc["userIdentity"] = {"autoUser": {"elevationLevel": level}}

    def outbound(self, doc: Doc) -> None:
        if "userIdentity" not in doc:
            return
        identity = doc.pop("userIdentity")
        auto = identity.get("autoUser") if isinstance(identity, Mapping) else None
        level = auto.get("elevationLevel") if isinstance(auto, Mapping) else None
        doc["runElevated"] = isinstance(level, str) and level.lower() == "admin"


@dataclass(frozen=True)
class _SchedulingError(_Rule):
    """Task execution infos: ``schedulingError`` <-> ``failureInfo``.

    ``failureInfo`` also reports non-zero exit codes; the old ``schedulingError`` only errors
    that kept the task from starting (no exit code), so only those are reported as such.
    """

    def inbound(self, doc: Doc) -> None:
        if "schedulingError" in doc:
            doc.setdefault("failureInfo", doc.pop("schedulingError"))

    def outbound(self, doc: Doc) -> None:
        failure = doc.pop("failureInfo", None)
        if failure is not None and doc.get("exitCode") is None:
            doc["schedulingError"] = failure


@dataclass(frozen=True)
class _ResizeErrors(_Rule):
    """Pool ``resizeError`` (one) <-> ``resizeErrors`` (a list)."""

    def inbound(self, doc: Doc) -> None:
        if "resizeError" in doc:
            error = doc.pop("resizeError")
            if error is not None:
                doc.setdefault("resizeErrors", [error])

    def outbound(self, doc: Doc) -> None:
        errors = doc.pop("resizeErrors", None)
        if isinstance(errors, list) and errors:
            doc["resizeError"] = errors[0]


@dataclass(frozen=True)
class _BlobSource(_Rule):
    """Resource file ``blobSource`` <-> ``httpUrl`` (a container source is the closest match)."""

    def inbound(self, doc: Doc) -> None:
        if "blobSource" in doc:
            doc.setdefault("httpUrl", doc.pop("blobSource"))

    def outbound(self, doc: Doc) -> None:
        source = doc.pop("httpUrl", None) or doc.get("storageContainerUrl")
        if source is not None:
            doc["blobSource"] = source


@dataclass(frozen=True)
class _Defaults(_Rule):
    """Fields an old version requires in responses and the modern model no longer has."""

    values: tuple[tuple[str, Any], ...] = ()

    def inbound(self, doc: Doc) -> None:
        for name, _ in self.values:
            doc.pop(name, None)

    def outbound(self, doc: Doc) -> None:
        for name, value in self.values:
            doc.setdefault(name, value)


@dataclass(frozen=True)
class _EnumSpelling(_Rule):
    """Enum values spelt in camelCase by old versions and lower-case by modern ones."""

    names: tuple[str, ...] = ()
    spellings: tuple[str, ...] = ()

    def inbound(self, doc: Doc) -> None:
        for name in self.names:
            value = doc.get(name)
            if isinstance(value, str) and value.lower() in self._modern:
                doc[name] = value.lower()

    def outbound(self, doc: Doc) -> None:
        for name in self.names:
            value = doc.get(name)
            if isinstance(value, str):
                doc[name] = self._modern.get(value.lower(), value)

    @property
    def _modern(self) -> dict[str, str]:
        return {spelling.lower(): spelling for spelling in self.spellings}


@dataclass(frozen=True)
class _BareTaskCounts(_Rule):
    """``/taskcounts``: ``{taskCounts, taskSlotCounts}`` <-> the bare task counts."""

    def inbound(self, doc: Doc) -> None:
        if "taskCounts" not in doc:
            counts = dict(doc)
            doc.clear()
            doc["taskCounts"] = counts

    def outbound(self, doc: Doc) -> None:
        counts = doc.get("taskCounts")
        if isinstance(counts, Mapping):
            doc.clear()
            doc.update(counts)


# --------------------------------------------------------------------------------------------
# Schema: which rules apply to which object, and where objects nest.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Type:
    rules: tuple[_Rule, ...] = ()
    children: Mapping[str, str] = field(default_factory=dict)  # key -> type name (lists: per item)


_RUN_ELEVATED = _RunElevated(V_USER_IDENTITY)
_SCHEDULING_ERROR = _SchedulingError(V_DEDICATED_NODES)
_TARGET_DEDICATED = _Rename(V_DEDICATED_NODES, "targetDedicated", "targetDedicatedNodes")
_CURRENT_DEDICATED = _Rename(V_DEDICATED_NODES, "currentDedicated", "currentDedicatedNodes")
_MAX_TASKS = _Rename(V_TASK_SLOTS, "maxTasksPerNode", "taskSlotsPerNode")

_TASK_CHILDREN = {"resourceFiles": "resourceFile"}

# 2016-07-01.3.1 spells these "noAction", "terminateJob" ...; later versions "noaction" ...
_JOB_ENUMS = _EnumSpelling(
    V_USER_IDENTITY,
    ("onAllTasksComplete", "onTaskFailure"),
    ("noAction", "terminateJob", "performExitOptionsJobAction"),
)

_TYPES: Mapping[str, _Type] = {
    # leaves and small objects
    "resourceFile": _Type((_BlobSource(V_HTTP_URL),)),
    "exitConditions": _Type((_Rename(V_DEDICATED_NODES, "schedulingError", "preProcessingError"),)),
    "taskExecInfo": _Type((_SCHEDULING_ERROR,)),
    "taskInfo": _Type(children={"executionInfo": "taskExecInfo"}),
    "imageReference": _Type(),
    # tasks of every kind
    "startTask": _Type((_RUN_ELEVATED,), _TASK_CHILDREN),
    "jobManagerTask": _Type((_RUN_ELEVATED,), _TASK_CHILDREN),
    "jobPreparationTask": _Type((_RUN_ELEVATED,), _TASK_CHILDREN),
    "jobReleaseTask": _Type((_RUN_ELEVATED,), _TASK_CHILDREN),
    "task": _Type(
        (_RUN_ELEVATED,),
        {**_TASK_CHILDREN, "executionInfo": "taskExecInfo", "exitConditions": "exitConditions"},
    ),
    "task.update": _Type(),
    "subtask": _Type((_SCHEDULING_ERROR,)),
    "taskcollection": _Type(children={"value": "task"}),
    "taskaddresult": _Type(),
    "taskaddcollectionresult": _Type(children={"value": "taskaddresult"}),
    "taskcounts": _Type(
        (
            _BareTaskCounts(V_TASK_SLOTS),
            _Defaults(V_TASK_COUNTS_NO_VALIDATION, (("validationStatus", "validated"),)),
        )
    ),
    # pools
    "poolSpecification": _Type((_TARGET_DEDICATED, _MAX_TASKS), {"startTask": "startTask"}),
    "pool": _Type(
        (_TARGET_DEDICATED, _CURRENT_DEDICATED, _MAX_TASKS, _ResizeErrors(V_DEDICATED_NODES)),
        {"startTask": "startTask"},
    ),
    "pool.resize": _Type((_TARGET_DEDICATED,)),
    "pool.update": _Type(children={"startTask": "startTask"}),
    "pool.patch": _Type((_TARGET_DEDICATED, _MAX_TASKS), {"startTask": "startTask"}),
    "poolusagemetrics": _Type((_Defaults(V_HTTP_URL, (("dataIngressGiB", 0.0), ("dataEgressGiB", 0.0))),)),
    "node": _Type(
        children={"startTask": "startTask", "startTaskInfo": "taskExecInfo", "recentTasks": "taskInfo"}
    ),
    "nodeagentsku": _Type(children={"verifiedImageReferences": "imageReference"}),
    "supportedimage": _Type(children={"imageReference": "imageReference"}),
    # jobs and job schedules
    "autoPoolSpecification": _Type(children={"pool": "poolSpecification"}),
    "poolInfo": _Type(children={"autoPoolSpecification": "autoPoolSpecification"}),
    "job": _Type(
        (_JOB_ENUMS,),
        {
            "poolInfo": "poolInfo",
            "jobManagerTask": "jobManagerTask",
            "jobPreparationTask": "jobPreparationTask",
            "jobReleaseTask": "jobReleaseTask",
        },
    ),
    "jobschedule": _Type(children={"jobSpecification": "job"}),
    "certificate": _Type(),
    "preparationandreleasetaskstatus": _Type(
        children={
            "jobPreparationTaskExecutionInfo": "taskExecInfo",
            "jobReleaseTaskExecutionInfo": "taskExecInfo",
        }
    ),
}

# Other names callers may use for the same shapes.
_ALIASES: Mapping[str, str] = {
    "pool.add": "pool",
    "pool.spec": "poolSpecification",
    "pool.updateproperties": "pool.update",
    "job.add": "job",
    "job.patch": "job",
    "job.update": "job",
    "jobSpecification": "job",
    "jobschedule.add": "jobschedule",
    "jobschedule.patch": "jobschedule",
    "jobschedule.update": "jobschedule",
    "task.add": "task",
    "task.addcollection": "taskcollection",
    "startTaskInfo": "taskExecInfo",
    "executionInfo": "taskExecInfo",
    "jobpreparationandreleasetaskstatus": "preparationandreleasetaskstatus",
}

# Every kind accepted by to_internal / from_internal / filter_to_internal.
KINDS: frozenset[str] = frozenset(_TYPES) | frozenset(_ALIASES)


def _resolve(kind: str) -> str:
    name = _ALIASES.get(kind, kind)
    if name not in _TYPES:
        raise ValueError(f"unknown Batch entity kind {kind!r}")
    return name


def _newest_rule(name: str, seen: frozenset[str] = frozenset()) -> ApiVersion:
    """The newest version any rule reachable from type ``name`` applies before."""
    spec = _TYPES[name]
    newest = max((rule.before for rule in spec.rules), default=V2016_07_01)
    for child in spec.children.values():
        if child not in seen:
            newest = max(newest, _newest_rule(child, seen | {name}))
    return newest


_NEWEST: Mapping[str, ApiVersion] = {name: _newest_rule(name) for name in _TYPES}


def _translate(value: Any, name: str, version: ApiVersion, inbound: bool) -> Any:
    if isinstance(value, list):
        return [_translate(item, name, version, inbound) for item in value]
    if not isinstance(value, Mapping) or version >= _NEWEST[name]:
        return value
    spec = _TYPES[name]
    doc = dict(value)
    rules = [rule for rule in spec.rules if version < rule.before]
    if inbound:
        # Old names become modern first, so children are found under their modern keys.
        for rule in reversed(rules):
            rule.inbound(doc)
        _translate_children(doc, spec, version, inbound)
    else:
        _translate_children(doc, spec, version, inbound)
        for rule in rules:
            rule.outbound(doc)
    return doc


def _translate_children(doc: Doc, spec: _Type, version: ApiVersion, inbound: bool) -> None:
    for key, child in spec.children.items():
        if doc.get(key) is not None:
            doc[key] = _translate(doc[key], child, version, inbound)


def to_internal(kind: str, body: Mapping[str, Any], version: ApiVersion) -> dict[str, Any]:
    """A request body of ``kind`` sent with ``version``, in the modern (internal) shape.

    Unknown properties pass through untouched (the service ignores or validates them).
    Raises ValueError for an unknown kind or a body that is not a JSON object.
    """
    name = _resolve(kind)
    if not isinstance(body, Mapping):
        raise ValueError("the request body must be a JSON object")
    result = _translate(body, name, version, inbound=True)
    return result if isinstance(result, dict) and result is not body else dict(result)


def from_internal(kind: str, doc: Mapping[str, Any], version: ApiVersion) -> dict[str, Any]:
    """An internal document of ``kind`` as the response for ``version`` spells it."""
    name = _resolve(kind)
    result = _translate(doc, name, version, inbound=False)
    return result if isinstance(result, dict) and result is not doc else dict(result)


def node_agent_skus(images: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``/nodeagentskus`` entries (api-versions before 2019-06-01.9.0) for the modern
    ``/supportedimages`` entries: one per node agent SKU with its verified image references.
    """
    skus: dict[str, dict[str, Any]] = {}
    for image in images:
        sku_id = image.get("nodeAgentSKUId")
        if not isinstance(sku_id, str):
            continue
        entry = skus.setdefault(
            sku_id, {"id": sku_id, "verifiedImageReferences": [], "osType": image.get("osType")}
        )
        reference = image.get("imageReference")
        if isinstance(reference, Mapping):
            entry["verifiedImageReferences"].append(dict(reference))
    return list(skus.values())


# --------------------------------------------------------------------------------------------
# $filter / $select property paths
# --------------------------------------------------------------------------------------------

# Path segment renames valid anywhere: old name -> (modern name, version it changed in).
_SEGMENT_RENAMES: Mapping[str, tuple[str, ApiVersion]] = {
    "targetDedicated": ("targetDedicatedNodes", V_DEDICATED_NODES),
    "currentDedicated": ("currentDedicatedNodes", V_DEDICATED_NODES),
    "resizeError": ("resizeErrors", V_DEDICATED_NODES),
    "maxTasksPerNode": ("taskSlotsPerNode", V_TASK_SLOTS),
    "runElevated": ("userIdentity", V_USER_IDENTITY),
    "blobSource": ("httpUrl", V_HTTP_URL),
}

# Parents under which ``schedulingError`` is a task failure (renamed failureInfo).
_TASK_INFO_PARENTS = frozenset(
    {"startTaskInfo", "jobPreparationTaskExecutionInfo", "jobReleaseTaskExecutionInfo"}
)
_TASK_KINDS = frozenset({"task", "subtask", "taskInfo", "taskExecInfo", "node"})

_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")


def _rename_segment(segment: str, parent: str | None, kind: str | None, version: ApiVersion) -> str:
    renamed = _SEGMENT_RENAMES.get(segment)
    if renamed is not None:
        return renamed[0] if version < renamed[1] else segment
    if segment != "schedulingError" or version >= V_DEDICATED_NODES:
        return segment
    if parent == "exitConditions":
        return "preProcessingError"
    task_like = kind in _TASK_KINDS
    if parent in _TASK_INFO_PARENTS or (parent == "executionInfo" and task_like):
        return "failureInfo"
    if parent is None and kind == "subtask":
        return "failureInfo"
    return segment


def filter_to_internal(text: str, version: ApiVersion, kind: str | None = None) -> str:
    """Rewrite old property names in a ``$filter`` or ``$select`` clause to the modern ones.

    String literals are left alone.  ``kind`` (an entity kind as for ``to_internal``) resolves
    the one ambiguous name: ``executionInfo/schedulingError`` is a task's failure (renamed
    ``failureInfo``) but a job's scheduling error (unchanged); without a kind it is kept.
    """
    if not text or version >= V_TASK_SLOTS:
        return text
    base = _ALIASES.get(kind, kind) if kind is not None else None

    def rewrite(match: re.Match[str]) -> str:
        token = match.group()
        if token.startswith("'"):
            return token
        segments = token.split("/")
        out = [
            _rename_segment(segment, segments[i - 1] if i else None, base, version)
            for i, segment in enumerate(segments)
        ]
        return "/".join(out)

    return _TOKEN_RE.sub(rewrite, text)
