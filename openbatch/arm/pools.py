"""Pools through the management plane: the ARM pool shape (``Microsoft.Batch/batchAccounts/pools``,
azure-mgmt-batch's ``Pool``) mapped to the one internal pool the Batch data plane serves, and back.

One pool, two views: a pool created here is listed by ``GET /pools`` of the data plane and the other
way round. What the ARM shape calls differently: ``deploymentConfiguration.virtualMachineConfiguration``,
``scaleSettings.fixedScale`` / ``scaleSettings.autoScale``, ``applicationPackages`` (``id`` is the
application's resource id), ``interNodeCommunication`` ``Enabled``/``Disabled``, enum values in
PascalCase (``Steady``, ``Resizing``, ``Spread``). Properties the data plane refuses are refused here
too, through the same rules (domain/pools.py).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import images

Doc = dict[str, Any]

_COPIED = ("displayName", "vmSize", "taskSlotsPerNode", "metadata", "userAccounts", "startTask",
           "networkConfiguration", "mountConfiguration", "resourceTags", "upgradePolicy")
_FIXED = ("targetDedicatedNodes", "targetLowPriorityNodes", "resizeTimeout", "nodeDeallocationOption")


def _pascal(value: str) -> str:
    return value[:1].upper() + value[1:] if value else value


def _lower_first(value: Any) -> Any:
    return value[:1].lower() + value[1:] if isinstance(value, str) and value else value


def _application_refs(refs: Any) -> list[Doc] | None:
    if refs is None:
        return None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise e.InvalidPropertyValue("applicationPackages must be a list of objects.",
                                     {"PropertyName": "applicationPackages"})
    return [{"applicationId": r.get("id"), **({"version": r["version"]} if r.get("version") else {})} for r in refs]


def _scale(scale: Any, body: Doc) -> None:
    if scale is None:
        return
    if not isinstance(scale, dict):
        raise e.InvalidPropertyValue("scaleSettings must be an object.", {"PropertyName": "scaleSettings"})
    fixed, auto = scale.get("fixedScale"), scale.get("autoScale")
    if fixed is not None and auto is not None:
        raise e.InvalidPropertyValue("scaleSettings takes fixedScale or autoScale, not both.",
                                     {"PropertyName": "scaleSettings"})
    if isinstance(auto, dict):
        body["enableAutoScale"] = True
        body["autoScaleFormula"] = auto.get("formula")
        if auto.get("evaluationInterval"):
            body["autoScaleEvaluationInterval"] = auto["evaluationInterval"]
    elif isinstance(fixed, dict):
        body["enableAutoScale"] = False
        for key in _FIXED:
            if fixed.get(key) is not None:
                body[key] = _lower_first(fixed[key]) if key == "nodeDeallocationOption" else fixed[key]


def to_data_plane(pool_id: str | None, props: Doc) -> Doc:
    """The data plane's pool add (or patch) body for ARM ``properties``."""
    body: Doc = {"id": pool_id} if pool_id is not None else {}
    for key in _COPIED:
        if props.get(key) is not None:
            body[key] = props[key]
    deployment = props.get("deploymentConfiguration")
    if isinstance(deployment, dict):
        if deployment.get("cloudServiceConfiguration") is not None:
            body["cloudServiceConfiguration"] = deployment["cloudServiceConfiguration"]
        if deployment.get("virtualMachineConfiguration") is not None:
            body["virtualMachineConfiguration"] = deployment["virtualMachineConfiguration"]
    _scale(props.get("scaleSettings"), body)
    refs = _application_refs(props.get("applicationPackages"))
    if refs is not None:
        body["applicationPackageReferences"] = refs
    if props.get("interNodeCommunication") is not None:
        body["enableInterNodeCommunication"] = str(props["interNodeCommunication"]).lower() == "enabled"
    policy = props.get("taskSchedulingPolicy")
    if isinstance(policy, dict) and policy.get("nodeFillType"):
        body["taskSchedulingPolicy"] = {"nodeFillType": _lower_first(policy["nodeFillType"])}
    if props.get("certificates"):
        raise e.InvalidPropertyValue("Certificates are not supported on pools through the management plane.",
                                     {"PropertyName": "certificates"})
    return body


def _scale_view(doc: Doc) -> Doc:
    if doc.get("enableAutoScale"):
        return {"autoScale": {"formula": doc.get("autoScaleFormula"),
                              "evaluationInterval": doc.get("autoScaleEvaluationInterval")}}
    fixed = {"targetDedicatedNodes": doc.get("targetDedicatedNodes", 0),
             "targetLowPriorityNodes": doc.get("targetLowPriorityNodes", 0),
             "resizeTimeout": doc.get("resizeTimeout")}
    return {"fixedScale": fixed}


def from_data_plane(doc: Doc, resource_id: str, app_id_prefix: str) -> Doc:
    """The ARM pool resource of an internal pool document."""
    props: Doc = {
        "displayName": doc.get("displayName") or doc["id"],
        "lastModified": doc.get("lastModified"), "creationTime": doc.get("creationTime"),
        "provisioningState": "Deleting" if doc.get("state") == "deleting" else "Succeeded",
        "provisioningStateTransitionTime": doc.get("stateTransitionTime"),
        "allocationState": _pascal(str(doc.get("allocationState", ""))),
        "allocationStateTransitionTime": doc.get("allocationStateTransitionTime"),
        "vmSize": doc.get("vmSize"),
        "currentDedicatedNodes": doc.get("currentDedicatedNodes", 0),
        "currentLowPriorityNodes": doc.get("currentLowPriorityNodes", 0),
        "scaleSettings": _scale_view(doc),
        "interNodeCommunication": "Enabled" if doc.get("enableInterNodeCommunication") else "Disabled",
        "taskSlotsPerNode": doc.get("taskSlotsPerNode", 1),
        "taskSchedulingPolicy": {"nodeFillType": _pascal(str((doc.get("taskSchedulingPolicy") or {})
                                                             .get("nodeFillType", "spread")))},
    }
    if doc.get("virtualMachineConfiguration"):
        props["deploymentConfiguration"] = {"virtualMachineConfiguration": doc["virtualMachineConfiguration"]}
    for key in ("metadata", "startTask", "userAccounts", "networkConfiguration", "resourceTags"):
        if doc.get(key):
            props[key] = doc[key]
    if doc.get("autoScaleRun"):
        props["autoScaleRun"] = doc["autoScaleRun"]
    refs = doc.get("applicationPackageReferences") or []
    if refs:
        props["applicationPackages"] = [
            {"id": r["applicationId"] if "/" in str(r["applicationId"]) else f"{app_id_prefix}/{r['applicationId']}",
             **({"version": r["version"]} if r.get("version") else {})} for r in refs]
    return {"id": resource_id, "name": doc["id"], "type": "Microsoft.Batch/batchAccounts/pools",
            "etag": doc.get("eTag"), "properties": props}


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON, letters' case aside (Azure's names and enums are case-insensitive)."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS).lower() == orjson.dumps(b, option=orjson.OPT_SORT_KEYS).lower()


def _normalised(key: str, value: Any) -> Any:
    """A property as the pool document keeps it (the image configuration gets its defaults filled in)."""
    if key == "virtualMachineConfiguration" and isinstance(value, dict):
        try:
            return images.check_virtual_machine_configuration(copy.deepcopy(value))
        except e.BatchError:
            return value  # the patch refuses it with the error
    return value


def unchanged_dropped(doc: Doc, body: Doc) -> Doc:
    """``body`` without the properties the pool ``doc`` already has with those values."""
    return {k: v for k, v in body.items() if not (k in doc and _same(doc[k], _normalised(k, v)))}


def scale_change(doc: Doc, scale: Doc) -> Doc:
    """The scale settings ``scale`` (from ``to_data_plane``), or {} when the pool already has them."""
    if scale.get("enableAutoScale"):
        same = doc.get("enableAutoScale") and doc.get("autoScaleFormula") == scale.get("autoScaleFormula") and (
            scale.get("autoScaleEvaluationInterval") in (None, doc.get("autoScaleEvaluationInterval")))
        return {} if same else scale
    targets = ("targetDedicatedNodes", "targetLowPriorityNodes")
    if not doc.get("enableAutoScale") and all(int(scale.get(k) or 0) == int(doc.get(k) or 0) for k in targets) \
            and scale.get("resizeTimeout") in (None, doc.get("resizeTimeout")):
        return {}
    return scale
