"""Requests the SDK would not send, through an azure-batch 15 client's pipeline (so they are signed)."""

from __future__ import annotations

from typing import Any

from azure.batch import BatchClient
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

API = "2025-06-01"


def raw(client: BatchClient, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None, api: str = API) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, response headers by lower-case name) of one request."""
    sep = "&" if "?" in path else "?"
    request = HttpRequest(method, f"{path}{sep}api-version={api}", content=body,
                          headers={"Content-Type": "application/json; odata=minimalmetadata", **(headers or {})})
    try:
        response = client.send_request(request)
    except HttpResponseError as exc:
        assert isinstance(exc.response, HttpResponse)
        response = exc.response
    text = response.text()
    return response.status_code, (response.json() if text else {}), {k.lower(): v for k, v in response.headers.items()}


def error_values(body: dict[str, Any]) -> dict[str, str]:
    """The ``values`` of an Azure Batch error body as a dict."""
    return {v["key"]: v["value"] for v in body.get("values", [])}
