"""SharedKey ``Authorization`` values as azure-batch and azure-storage-blob compute them, for
clients that speak raw HTTP (the load benchmark, the reliability tests)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import parse_qsl

from openbatch.common import sharedkey


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def batch_authorization(key: str, account: str, method: str, path: str, query: str,
                        headers: Mapping[str, str]) -> str:
    """``SharedKey account:signature`` of a Batch request (``path`` and ``query`` as sent)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    to_sign = sharedkey.batch_string_to_sign(method, _lower(headers), account, path, pairs)
    return f"SharedKey {account}:{sharedkey.sign(base64.b64decode(key), to_sign)}"


def blob_authorization(key: str, account: str, method: str, path: str, query: str,
                       headers: Mapping[str, str]) -> str:
    """``SharedKey account:signature`` of a Blob request (``path`` as sent, starting with ``/{account}``)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    to_sign = sharedkey.blob_string_to_sign(method, _lower(headers), account, path, pairs, collated=True)
    return f"SharedKey {account}:{sharedkey.sign(base64.b64decode(key), to_sign)}"
