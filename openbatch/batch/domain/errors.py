"""The Batch error vocabulary the domain raises. Each class is one Azure error code; the wire
renderer (``batch/wire/errors.py``) decides the HTTP status and body. No HTTP here."""

from __future__ import annotations

from typing import ClassVar


class BatchError(Exception):
    """A request the service refuses. ``values`` become the error body's key/value details."""

    code: ClassVar[str] = "InternalError"

    def __init__(self, message: str, values: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.values = values or {}


def _error(name: str, doc: str) -> type[BatchError]:
    return type(name, (BatchError,), {"code": name, "__doc__": doc})


# 400
InvalidRequestBody = _error("InvalidRequestBody", "The body is not valid JSON or has the wrong shape.")
MissingRequiredProperty = _error("MissingRequiredProperty", "A required property is absent.")
InvalidPropertyValue = _error("InvalidPropertyValue", "A property has a value the service does not accept.")
OutOfRangePriority = _error("OutOfRangePriority", "Priority outside -1000..1000.")
MissingRequiredQueryParameter = _error("MissingRequiredQueryParameter", "E.g. api-version.")
InvalidQueryParameterValue = _error("InvalidQueryParameterValue", "E.g. a malformed $filter.")
InvalidHeaderValue = _error("InvalidHeaderValue", "A header has a malformed value.")
InvalidRange = _error("InvalidRange", "A Range header outside the file.")
UnsupportedApiVersion = _error("InvalidApiVersionParameter", "An api-version the service cannot parse.")
TooManyRequests = _error("TooManyRequests", "Request rejected to protect the service.")
ServerBusy = _error("ServerBusy", "The service cannot take the request now; retry after Retry-After seconds.")
InvalidAutoScalingSettings = _error("InvalidAutoScalingSettings", "Autoscale settings invalid for the pool.")
AutoScalingFormulaSyntaxError = _error("AutoScalingFormulaSyntaxError", "The autoscale formula cannot be parsed.")
AutoScaleFormulaTooLong = _error("AutoScaleFormulaTooLong", "An autoscale formula longer than 8192 characters.")
TaskDependenciesNotSpecifiedOnJob = _error("TaskDependenciesNotSpecifiedOnJob", "dependsOn without usesTaskDependencies.")
TaskDependencyListTooLong = _error("TaskDependencyListTooLong", "dependsOn.taskIds longer than 64000 characters.")
TaskIdSameAsJobPreparationTask = _error("TaskIdSameAsJobPreparationTask", "A task id equal to the job prep task's.")
TaskIdSameAsJobReleaseTask = _error("TaskIdSameAsJobReleaseTask", "A task id equal to the job release task's.")
InvalidUri = _error("InvalidUri", "A resource path that is malformed or leaves the node's directory.")
JobPreparationTaskNotSpecified = _error("JobPreparationTaskNotSpecified", "Prep/release status of a job without one.")
InvalidCertificateReferences = _error("InvalidCertificateReferences", "A pool names a certificate the account does "
                                      "not have, or one being deleted.")
# 403
AuthenticationFailed = _error("AuthenticationFailed", "Missing or wrong SharedKey signature.")
# 404
ResourceNotFound = _error("ResourceNotFound", "No such route.")
PoolNotFound = _error("PoolNotFound", "")
NodeNotFound = _error("NodeNotFound", "")
JobNotFound = _error("JobNotFound", "")
TaskNotFound = _error("TaskNotFound", "")
JobScheduleNotFound = _error("JobScheduleNotFound", "")
FileNotFound = _error("FileNotFound", "")
ApplicationNotFound = _error("ApplicationNotFound", "")
ApplicationPackageNotFound = _error("ApplicationPackageNotFound", "No such version of an application.")
CertificateNotFound = _error("CertificateNotFound", "")
# 405
MethodNotAllowed = _error("UnsupportedHttpVerb", "Verb not supported on this resource.")
# 409
PoolExists = _error("PoolExists", "")
JobExists = _error("JobExists", "")
TaskExists = _error("TaskExists", "")
JobScheduleExists = _error("JobScheduleExists", "")
PoolBeingDeleted = _error("PoolBeingDeleted", "")
PoolBeingResized = _error("PoolBeingResized", "")
PoolNotResizing = _error("PoolNotResizing", "")
JobBeingDeleted = _error("JobBeingDeleted", "")
JobBeingTerminated = _error("JobBeingTerminated", "")
JobCompleted = _error("JobCompleted", "")
JobNotActive = _error("JobNotActive", "")
JobNotDisabled = _error("JobNotDisabled", "")
JobScheduleBeingDeleted = _error("JobScheduleBeingDeleted", "")
JobScheduleCompleted = _error("JobScheduleCompleted", "")
JobScheduleBeingTerminated = _error("JobScheduleBeingTerminated", "")
JobWithSameIdExists = _error("JobWithSameIdExists", "A job schedule may not take the id of a job.")
JobScheduleWithSameIdExists = _error("JobScheduleWithSameIdExists", "A job may not take the id of a job schedule.")
TaskCompleted = _error("TaskCompleted", "")
TaskNotCompleted = _error("TaskNotCompleted", "")
NodeNotReady = _error("NodeNotReady", "")
AutoScaleNotEnabled = _error("AutoScaleNotEnabled", "")
AutoScaleEnabled = _error("AutoScaleEnabled", "")
OperationInvalidForCurrentState = _error("OperationInvalidForCurrentState", "")
FileBeingUsed = _error("FileBeingUsed", "")
NodeUserExists = _error("NodeUserExists", "Adding a node user account that exists.")
NodeUserNotFound = _error("NodeUserNotFound", "Updating or deleting a node user account that does not exist (404).")
CertificateExists = _error("CertificateExists", "")
InvalidApplicationPackageReferences = _error("InvalidApplicationPackageReferences", "A pool names a package that "
                                             "does not exist or is not active (409, as the spec says).")
ApplicationPackageAlreadyExists = _error("ApplicationPackageAlreadyExists", "An active version of an application "
                                         "that does not allow updates.")
ApplicationPackageBlobNotFound = _error("ApplicationPackageBlobNotFound", "Activation before the zip was uploaded.")
CertificateBeingDeleted = _error("CertificateBeingDeleted", "")
CertificateStateActive = _error("CertificateStateActive", "Cancel deletion of a certificate that is not being deleted.")
# 412
ConditionNotMet = _error("ConditionNotMet", "An If-* precondition failed.")
# 413
RequestBodyTooLarge = _error("RequestBodyTooLarge", "The request body is too large.")
