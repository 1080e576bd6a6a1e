"""Application packages on a node: a package's zip downloaded and extracted into the node's
``applications/{directory}`` once, before the first run that needs it.

The directory name (``{application}{version}.{digest}``, batch/domain/applications.py) changes with
every upload, so a directory that exists is complete: a package is extracted into a temporary
directory next to it and renamed into place. Extraction never leaves that directory: an entry with
an absolute name, a ``..`` component, NUL or a backslash separator is refused (zip slip), links in
the zip are not made (an entry whose mode says link is skipped), and every directory and file is
made from its parent's descriptor without following links (node/safefs.py). The zip is streamed to
a temporary file first; its URL (with a SAS) never appears in a message.

Failures are the run's failureInfo (``ApplicationPackageDownloadFailed``,
``ApplicationPackageExtractFailed``, category usererror): the task fails before it starts, as on
Azure when a package cannot be installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from openbatch.node import safefs
from openbatch.node.failure import TaskFailure
from openbatch.node.fetch import public_url
from openbatch.node.layout import NodeLayout, PathOutsideNode, relative_parts

CHUNK = 1 << 20
MAX_ENTRIES = 100_000


class PackageError(TaskFailure):
    """A package could not be put in place; the fields are the run's failureInfo."""


def _entry_parts(name: str) -> list[str]:
    """The path components of a zip entry, refusing anything that could leave the target."""
    if "\\" in name:
        raise PathOutsideNode(name, "backslash in zip entry name")
    return relative_parts(name)


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_space(infos: Sequence[zipfile.ZipInfo], target_fd: int) -> None:
    """A package that would not fit on the node's disk (a zip bomb, or a disk too small) is refused
    before anything is written; what the entries claim is what is checked (reads stop there too)."""
    size = sum(info.file_size for info in infos)
    stats = os.statvfs(target_fd)
    free = stats.f_bavail * stats.f_frsize
    if size > free:
        raise OSError(f"the package holds {size} bytes, the node's disk has {free} free")


def extract(zip_path: Path, target_fd: int) -> None:
    """Extract ``zip_path`` into the directory ``target_fd`` (see the module docstring)."""
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PathOutsideNode(str(len(infos)), "too many entries")
        check_space(infos, target_fd)
        for info in infos:
            parts = _entry_parts(info.filename)
            if not parts or _is_link(info):
                continue
            if info.is_dir():
                os.close(safefs.walk(target_fd, parts, create=True))
                continue
            with safefs.closing(safefs.walk(target_fd, parts[:-1], create=True)) as parent:
                mode = (info.external_attr >> 16) & 0o777 or 0o644
                fd = safefs.create_file(parent, parts[-1], None, mode=mode | 0o644, exclusive=True)
                with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                    shutil.copyfileobj(src, out, CHUNK)


async def _download(client: httpx.AsyncClient, url: str, into: Path) -> None:
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise PackageError("ApplicationPackageDownloadFailed",
                                   f"The application package could not be downloaded from {public_url(url)}: "
                                   f"HTTP {response.status_code}.")
            with open(into, "wb") as out:
                async for chunk in response.aiter_bytes(CHUNK):
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise PackageError("ApplicationPackageDownloadFailed",
                           f"The application package could not be downloaded from {public_url(url)}: "
                           f"{type(exc).__name__}.") from None


def _install_zip(zip_path: Path, applications: Path, directory: str) -> None:
    """Extract into a temporary sibling of ``applications/{directory}``, then rename it into place."""
    with safefs.closing(safefs.open_dir(applications)) as apps:
        temp = f".{directory}.{uuid.uuid4().hex}"
        os.mkdir(temp, 0o755, dir_fd=apps)
        try:
            with safefs.closing(safefs.walk(apps, [temp])) as target:
                extract(zip_path, target)
            os.rename(temp, directory, src_dir_fd=apps, dst_dir_fd=apps)
        except BaseException:
            with contextlib.suppress(OSError):
                safefs.rmtree_at(apps, temp)
            raise


class Packages:
    """The packages of the nodes of one host: one installation at a time per directory."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def install(self, client: httpx.AsyncClient, layout: NodeLayout,
                      packages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None, Path]]:
        """Make sure every package is under ``layout.applications``; (application id, version or
        None, directory) for the task's environment: each package under its version's name, and
        under the application's alone when the reference asked for the default version."""
        out: list[tuple[str, str | None, Path]] = []
        for package in packages:
            directory = str(package["directory"])
            if not directory or directory.startswith(".") or "/" in directory:
                raise PackageError("ApplicationPackageExtractFailed", "Invalid application package directory.")
            path = layout.applications / directory
            key = (str(layout.root), directory)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if not path.is_dir():
                    await self._fetch(client, str(package["url"]), layout.applications, directory)
            app, version = str(package["applicationId"]), str(package["version"])
            out.append((app, version, path))
            if package.get("askedVersion") is None:
                out.append((app, None, path))
        return out

    async def _fetch(self, client: httpx.AsyncClient, url: str, applications: Path, directory: str) -> None:
        applications.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".download-", dir=applications)
        os.close(fd)
        try:
            await _download(client, url, Path(name))
            try:
                await asyncio.to_thread(_install_zip, Path(name), applications, directory)
            except (zipfile.BadZipFile, PathOutsideNode, safefs.UnsafePath, OSError, ValueError) as exc:
                raise PackageError("ApplicationPackageExtractFailed",
                                   f"The application package could not be extracted: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
