"""Application package zips in the Blob endpoint: the ``PackageStorage`` the domain asks for
(batch/domain/applications.py), over the running Blob service of this server.

The account is its own auto-storage account: a package of account ``a`` is a blob of the storage
account ``a``. Upload URLs carry a blob SAS allowing create and write (what ``upload_blob`` of
azure-storage-blob needs), download URLs a read SAS, both signed with the account's first key as
the other auto-storage URLs are (compute/local.py).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from openbatch.blob.errors import BlobError
from openbatch.common.conditions import Conditions
from openbatch.common.sas import generate_blob_sas
from openbatch.config import Settings

READ_LIFETIME = timedelta(days=7)


class BlobPackageStorage:
    """See the module docstring. ``blob`` is the server's BlobService (started before use)."""

    def __init__(self, settings: Settings, blob: Any):
        self.settings = settings
        self.blob = blob

    def prepare(self, account: str, container: str) -> None:
        blobs = self.blob.blobs
        if blobs.find_container(account, container) is None:
            with contextlib.suppress(BlobError):  # made meanwhile
                blobs.create_container(account, container, {}, None)

    def exists(self, account: str, container: str, blob: str) -> bool:
        try:
            self.blob.blobs.blob(account, container, blob, Conditions())
        except BlobError:
            return False
        return True

    def delete(self, account: str, container: str, blob: str) -> None:
        with contextlib.suppress(BlobError):
            self.blob.blobs.delete_blob(account, container, blob, Conditions(), delete_snapshots="include")

    def _url(self, account: str, container: str, blob: str, permissions: str, expiry: datetime) -> str:
        base = f"{self.settings.blob_url.rstrip('/')}/{account}/{container}/{quote(blob, safe='')}"
        acct = self.settings.accounts.get(account)
        if acct is None:
            return base
        return f"{base}?{generate_blob_sas(acct, container, blob, permissions, expiry)}"

    def upload_url(self, account: str, container: str, blob: str, hours: int) -> tuple[str, str]:
        expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)
        return self._url(account, container, blob, "rcw", expiry), expiry.strftime("%Y-%m-%dT%H:%M:%SZ")

    def read_url(self, account: str, container: str, blob: str) -> str:
        return self._url(account, container, blob, "r", datetime.now(UTC) + READ_LIFETIME)
