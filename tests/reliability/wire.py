"""Signed raw HTTP to both endpoints for the reliability suites: any date (or none), any key, any
bytes, and always a bounded client timeout, so a server that hangs fails the test instead of
stalling it."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.signing import batch_authorization, blob_authorization
from openbatch.common.clock import rfc1123
from openbatch.testing import LiveServer

TIMEOUT = 30.0  # seconds; a server that takes longer than this on one small request has hung
BLOB_VERSION = "2021-08-06"
BATCH_VERSION = "2024-07-01.20.0"
NOW = "now"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The Azure error code: ``x-ms-error-code`` (Blob) or ``odata.error.code`` (Batch)."""
        if "x-ms-error-code" in self.headers:
            return self.headers["x-ms-error-code"]
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc.get("code") if isinstance(doc, dict) else None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.code!r}, {self.body[:300]!r})"


def date_value(date: datetime | str | None) -> str | None:
    if date is None:
        return None
    if date == NOW:
        return rfc1123(datetime.now(UTC))
    return rfc1123(date) if isinstance(date, datetime) else date


batch_signature = batch_authorization
blob_signature = blob_authorization


def send(port: int, method: str, target: str, headers: Mapping[str, str], body: bytes = b"",
         timeout: float = TIMEOUT) -> Reply:
    """One request over a fresh connection, exactly as given (no path normalization)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def batch_request(server: LiveServer, method: str, path: str, *, query: str = "", body: bytes | Any = b"",
                  headers: Mapping[str, str] | None = None, date: datetime | str | None = NOW,
                  date_header: str = "ocp-date", sign: bool = True, key: str | None = None,
                  account: str | None = None, timeout: float = TIMEOUT) -> Reply:
    """``method path?api-version=...&query`` to the Batch endpoint, signed as azure-batch signs it.

    ``date`` goes in ``date_header`` (``ocp-date`` or ``date``); None sends no date at all.
    A non-bytes ``body`` is sent as JSON.
    """
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    full_query = "&".join(filter(None, [f"api-version={BATCH_VERSION}", query]))
    h: dict[str, str] = {}
    if body or method not in ("GET", "HEAD"):
        h["content-length"] = str(len(body))
    if body:
        h["content-type"] = "application/json; odata=minimalmetadata"
    if (value := date_value(date)) is not None:
        h[date_header] = value
    h.update({k.lower(): v for k, v in (headers or {}).items()})
    if sign:
        h["authorization"] = batch_signature(key or server.key, account or server.account, method, path,
                                             full_query, h)
    return send(server.batch_port, method, f"{path}?{full_query}", h, body, timeout)


def blob_request(server: LiveServer, method: str, path: str, *, query: str = "", body: bytes = b"",
                 headers: Mapping[str, str] | None = None, date: datetime | str | None = NOW,
                 date_header: str = "x-ms-date", sign: bool = True, key: str | None = None,
                 timeout: float = TIMEOUT) -> Reply:
    """``method /{account}{path}?query`` to the Blob endpoint, SharedKey-signed as the Storage SDKs sign.

    ``date`` goes in ``date_header`` (``x-ms-date`` or ``date``); None sends no date at all.
    """
    raw_path = f"/{server.account}{path}"
    h = {"x-ms-version": BLOB_VERSION, "content-length": str(len(body))}
    if (value := date_value(date)) is not None:
        h[date_header] = value
    h.update({k.lower(): v for k, v in (headers or {}).items()})
    if sign:
        h["authorization"] = blob_signature(key or server.key, server.account, method, raw_path, query, h)
    return send(server.blob_port, method, raw_path + (f"?{query}" if query else ""), h, body, timeout)


def send_raw(port: int, data: bytes, *, half_close: bool = True, timeout: float = TIMEOUT) -> bytes:
    """Write ``data`` to a fresh connection (optionally shut down our side) and read the answer
    until the server closes or ``timeout``; what a truncated or malformed request gets back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(raw: bytes) -> int | None:
    """The status code of a raw HTTP response, None when there is none."""
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


class BatchSharedKey(requests.auth.AuthBase):
    """requests auth that signs each prepared request as azure-batch does, with ``ocp-date`` = now."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        self.key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        for name in [n for n in r.headers if n.lower() in ("ocp-date", "date", "authorization")]:
            del r.headers[name]
        r.headers["ocp-date"] = rfc1123(datetime.now(UTC))
        if r.method not in ("GET", "HEAD") and "content-length" not in {n.lower() for n in r.headers}:
            r.headers["Content-Length"] = "0"
        parts = urlsplit(r.url or "")
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in r.headers.items()}
        r.headers["Authorization"] = batch_signature(self.key, self.account, r.method or "GET", parts.path,
                                                     parts.query, headers)
        return r
