"""The one Batch error renderer: domain error -> HTTP status + Azure Batch JSON error body."""

from __future__ import annotations

from typing import Any

from openbatch.batch.domain import errors as e

_STATUS: dict[str, int] = {
    e.AuthenticationFailed.code: 403,
    e.ConditionNotMet.code: 412,
    e.RequestBodyTooLarge.code: 413,
    e.MethodNotAllowed.code: 405,
    e.CertificateNotFound.code: 404,
    e.NodeUserNotFound.code: 404,
    e.NodeUserExists.code: 409,
    **{cls.code: 409 for cls in (e.CertificateExists, e.CertificateBeingDeleted, e.CertificateStateActive,
                                 e.InvalidApplicationPackageReferences, e.ApplicationPackageAlreadyExists,
                                 e.ApplicationPackageBlobNotFound)},
    e.TooManyRequests.code: 429,
    e.ServerBusy.code: 503,
    **{cls.code: 404 for cls in (e.ResourceNotFound, e.PoolNotFound, e.NodeNotFound, e.JobNotFound, e.TaskNotFound,
                                 e.JobScheduleNotFound, e.FileNotFound, e.ApplicationNotFound,
                                 e.ApplicationPackageNotFound)},
    **{cls.code: 409 for cls in (e.PoolExists, e.JobExists, e.TaskExists, e.JobScheduleExists, e.PoolBeingDeleted,
                                 e.PoolBeingResized, e.PoolNotResizing, e.JobBeingDeleted, e.JobBeingTerminated,
                                 e.JobCompleted, e.JobNotActive, e.JobNotDisabled, e.JobScheduleBeingDeleted,
                                 e.JobScheduleCompleted, e.JobScheduleBeingTerminated, e.JobWithSameIdExists,
                                 e.JobScheduleWithSameIdExists, e.TaskCompleted, e.TaskNotCompleted, e.NodeNotReady,
                                 e.AutoScaleNotEnabled, e.AutoScaleEnabled, e.OperationInvalidForCurrentState,
                                 e.FileBeingUsed)},
}


def status_of(error: e.BatchError) -> int:
    """HTTP status Azure Batch uses for this error code (400 for the validation family); an error
    class may name its own (a bearer token refused with 401)."""
    own = getattr(error, "status", None)
    if isinstance(own, int):
        return own
    return _STATUS.get(error.code, 500 if type(error) is e.BatchError else 400)


def error_body(error: e.BatchError, base_url: str, request_id: str, now: str) -> dict[str, Any]:
    """Azure's shape; the message ends with the request id and time, as the real service's does."""
    body: dict[str, Any] = {
        "odata.metadata": f"{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": error.code,
        "message": {"lang": "en-US", "value": f"{error.message}\nRequestId:{request_id}\nTime:{now}"},
    }
    if error.values:
        body["values"] = [{"key": k, "value": v} for k, v in error.values.items()]
    return body
