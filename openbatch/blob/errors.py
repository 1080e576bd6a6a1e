"""The Blob error vocabulary: what the domain raises (Azure error codes and messages).

The domain and the auth layer raise :class:`BlobError` with an Azure error code; the one
renderer in ``wire.py`` turns it into the HTTP status, the XML body and the headers.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "AccessTierNotSupportedForBlobType": "The access tier is not supported for this blob type.",
    "AccountNotFound": "The specified account does not exist.",
    "AppendPositionConditionNotMet": "The append position condition specified was not met.",
    "AuthenticationFailed": (
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature."
    ),
    "AuthorizationFailure": "This request is not authorized to perform this operation.",
    "AuthorizationPermissionMismatch": "This request is not authorized to perform this operation using this permission.",
    "AuthorizationResourceTypeMismatch": (
        "This request is not authorized to perform this operation using this resource type."
    ),
    "BlobAlreadyExists": "The specified blob already exists.",
    "BlobArchived": "This operation is not permitted on an archived blob.",
    "BlobIsSealed": (
        "The specified blob is sealed, and its contents can't be modified unless the blob is re-created after a delete."
    ),
    "BlobNotFound": "The specified blob does not exist.",
    "BlockCountExceedsLimit": "The uncommitted block count cannot exceed the maximum limit of 100,000 blocks.",
    "BlockListTooLong": "The block list may not contain more than 50,000 blocks.",
    "CannotVerifyCopySource": "Could not verify the copy source within the specified time.",
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
    "ContainerAlreadyExists": "The specified container already exists.",
    "ContainerNotFound": "The specified container does not exist.",
    "CopyIdMismatch": "The specified copy ID did not match the copy ID for the pending copy operation.",
    "InvalidAuthenticationInfo": (
        "Server failed to authenticate the request. Please refer to the information in the www-authenticate header."
    ),
    "InvalidBlobOrBlock": "The specified blob or block content is invalid.",
    "InvalidBlobType": "The blob type is invalid for this operation.",
    "InvalidBlockId": "The specified block ID is invalid. The block ID must be Base64-encoded.",
    "InvalidBlockList": "The specified block list is invalid.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "InvalidInput": "One of the request inputs is not valid.",
    "InvalidMetadata": "The metadata specified is invalid. It has characters that are not permitted.",
    "InvalidPageRange": "The page range specified is invalid.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is invalid.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "InvalidResourceName": "The specifed resource name contains invalid characters.",
    "InvalidUri": "The requested URI does not represent any resource on the server.",
    "InvalidXmlDocument": "XML specified is not syntactically valid.",
    "MetadataTooLarge": "The size of the specified metadata exceeds the maximum size permitted.",
    "MaxBlobSizeConditionNotMet": "The max blob size condition specified was not met.",
    "Md5Mismatch": "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
    "MissingRequiredHeader": "An HTTP header that's mandatory for this request is not specified.",
    "MissingRequiredQueryParameter": "A query parameter that's mandatory for this request is not specified.",
    "NoAuthenticationInformation": "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
    "NoPendingCopyOperation": "There is currently no pending copy operation.",
    "OutOfRangeInput": "One of the request inputs is out of range.",
    "PendingCopyOperation": "There is currently a pending copy operation.",
    "PreviousSnapshotNotFound": "The previous snapshot is not found.",
    "RequestBodyTooLarge": "The request body is too large and exceeds the maximum permissible limit.",
    "ResourceNotFound": "The specified resource does not exist.",
    "SequenceNumberConditionNotMet": "The sequence number condition specified was not met.",
    "SequenceNumberIncrementTooLarge": (
        "The sequence number increment cannot be performed because it would result in overflow of the sequence number."
    ),
    "SnapshotsPresent": "This operation is not permitted because the blob has snapshots.",
    "UnsupportedHeader": "One of the headers specified in the request is not supported.",
    "UnsupportedHttpVerb": "The resource doesn't support the specified HTTP verb.",
    "UnsupportedQueryParameter": "One of the query parameters specified in the request URI is not supported.",
}


class BlobError(Exception):
    """A Blob operation failed with an Azure error ``code``.

    ``details`` become extra elements of the XML error body (``HeaderName``,
    ``QueryParameterName``, ``AuthenticationErrorDetail`` ...). ``status`` overrides the
    status the renderer would pick for the code (rarely needed).
    """

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None,
                 **details: str) -> None:
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.status = status
        self.details = details
        self.headers: list[tuple[str, str]] = []  # extra response headers (a bearer challenge)
        super().__init__(f"{code}: {self.message}")


def bad_header(name: str, value: str = "", message: str | None = None) -> BlobError:
    return BlobError("InvalidHeaderValue", message, HeaderName=name, HeaderValue=value)


def bad_query(name: str, value: str = "", reason: str = "") -> BlobError:
    details = {"QueryParameterName": name, "QueryParameterValue": value}
    if reason:
        details["Reason"] = reason
    err = BlobError("InvalidQueryParameterValue")
    err.details = details
    return err
