"""Raw, SharedKey-signed HTTP requests to a live Blob endpoint, for what the SDK cannot send
(unnormalized paths, bad XML, lying headers)."""

from __future__ import annotations

import base64
import http.client
from dataclasses import dataclass
from urllib.parse import unquote

from openbatch.common import sharedkey
from openbatch.common.clock import http_date
from openbatch.testing import LiveServer

VERSION = "2021-08-06"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        return self.headers.get("x-ms-error-code")


def query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def request(server: LiveServer, method: str, path: str, *, query: str = "", body: bytes = b"",
            headers: dict[str, str] | None = None, sign: bool = True, key: str | None = None) -> RawResponse:
    """Send ``method /{account}{path}?{query}`` exactly as given (no path normalization)."""
    raw_path = f"/{server.account}{path}"
    h = {"x-ms-version": VERSION, "x-ms-date": http_date(), "content-length": str(len(body))}
    h.update({k.lower(): v for k, v in (headers or {}).items()})
    if sign:
        to_sign = sharedkey.blob_string_to_sign(method, h, server.account, raw_path, query_pairs(query), collated=True)
        secret = base64.b64decode(key or server.key)
        h["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(secret, to_sign)}"
    conn = http.client.HTTPConnection("127.0.0.1", server.blob_port, timeout=30)
    try:
        conn.putrequest(method, raw_path + (f"?{query}" if query else ""), skip_accept_encoding=True)
        for name, value in h.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()
