"""Blob bytes: immutable data files ("extents") named by generated ids, never by blob names.

Every Put Blob and every Put Block writes one new extent; a committed blob is an ordered list
of (extent, offset, length) parts, so committing a block list or copying a blob moves no
bytes. An extent becomes visible only when a metadata commit references it; until then it is
invisible scratch, and the startup sweep deletes extents nothing references (uploads cut off
by a crash). Extents that are no longer referenced are deleted at once, or when the last
download still reading them finishes.

Files are not fsynced: what was written before a metadata commit is in the OS page cache and
survives the server process being killed (SIGKILL), which is the durability promised; an fsync
per request would only guard against OS crashes and cost every upload dearly.

Knows no HTTP and no blob rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from openbatch.blob.models import Piece
from openbatch.common.ids import opaque_id

CHUNK = 1 << 20  # unit of file I/O and of response bodies
_INLINE = 64 << 10  # reads/writes up to this size stay on the event loop thread


class BodyTooLarge(Exception):
    """The stream carried more bytes than the limit given to :meth:`ExtentStore.ingest`."""


class ExtentWriter:
    """Writes one new extent file; optionally computes its MD5 on the way."""

    def __init__(self, path: str, extent: str, md5: bool) -> None:
        self.path = path
        self.extent = extent
        self.size = 0
        self._hash = hashlib.md5() if md5 else None
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    @property
    def md5(self) -> bytes | None:
        return self._hash.digest() if self._hash is not None else None

    def write(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class ExtentStore:
    """The data files under ``root`` (fanned out into 256 directories by id prefix)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._dirs: set[str] = set()
        self._pins: dict[str, int] = {}
        self._deferred: set[str] = set()
        self._deferred_trims: set[str] = set()

    def path(self, extent: str) -> str:
        return f"{self.root}/{extent[:2]}/{extent}"

    def create(self, md5: bool = False) -> ExtentWriter:
        extent = opaque_id()
        prefix = extent[:2]
        if prefix not in self._dirs:
            (self.root / prefix).mkdir(exist_ok=True)
            self._dirs.add(prefix)
        return ExtentWriter(self.path(extent), extent, md5)

    async def ingest(self, chunks: AsyncIterator[bytes], writer: ExtentWriter, limit: int) -> None:
        """Write a body stream into ``writer``; raise :class:`BodyTooLarge` past ``limit`` bytes.

        Bytes are written in ~1 MiB pieces; large pieces are written (and hashed) by a worker
        thread while the next piece is being received.
        """
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        parts: list[bytes] = []
        buffered = total = 0
        try:
            async for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(str(total))
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= CHUNK:
                    data = b"".join(parts)
                    parts.clear()
                    buffered = 0
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, writer.write, data)
            if pending is not None:
                await pending
                pending = None
            if parts:
                data = b"".join(parts)
                if len(data) > _INLINE:
                    await loop.run_in_executor(None, writer.write, data)
                else:
                    writer.write(data)
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            writer.close()

    async def read(self, pieces: Iterable[Piece]) -> AsyncIterator[bytes]:
        """Yield the bytes of ``(extent, offset, length)`` pieces in chunks of at most 1 MiB."""
        loop = asyncio.get_running_loop()
        for piece in pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            extent, offset, length = piece
            if not extent:  # a run of zeros (unwritten pages): never materialized whole
                for start in range(0, length, CHUNK):
                    yield _ZEROS[: min(CHUNK, length - start)]
                continue
            fd = os.open(self.path(extent), os.O_RDONLY)
            try:
                end = offset + length
                while offset < end:
                    size = min(CHUNK, end - offset)
                    if size > _INLINE:
                        data = await loop.run_in_executor(None, _pread_full, fd, size, offset)
                    else:
                        data = _pread_full(fd, size, offset)
                    offset += size
                    yield data
            finally:
                os.close(fd)

    # --- reclaiming ---------------------------------------------------------------------------

    def pin(self, extents: Iterable[str]) -> None:
        """Keep ``extents`` on disk while a reader uses them, even if they are released."""
        for e in extents:
            self._pins[e] = self._pins.get(e, 0) + 1

    def unpin(self, extents: Iterable[str], referenced: Callable[[str], bool],
              used: Callable[[str], list[tuple[int, int]]] | None = None) -> None:
        freed, trimmed = [], []
        for e in extents:
            n = self._pins.get(e, 0) - 1
            if n > 0:
                self._pins[e] = n
                continue
            self._pins.pop(e, None)
            if e in self._deferred:
                self._deferred.discard(e)
                freed.append(e)
            if e in self._deferred_trims:
                self._deferred_trims.discard(e)
                trimmed.append(e)
        if freed:
            self.release(freed, referenced)
        if trimmed and used is not None:
            self.trim(trimmed, used)

    def trim(self, extents: Iterable[str], used: Callable[[str], list[tuple[int, int]]]) -> int:
        """Give back to the file system the parts of ``extents`` that no record uses any more (page
        blob pages overwritten, cleared or cut off by a resize) by punching holes in the files;
        ``used(extent)`` is the ``(offset, length)`` runs still referenced. Holes are whole file
        system blocks; an extent a reader holds is trimmed when the reader lets go. Returns the
        bytes given back."""
        freed = 0
        for e in dict.fromkeys(extents):
            if not e:
                continue
            if e in self._pins:
                self._deferred_trims.add(e)
                continue
            runs = used(e)
            if not runs:  # unreferenced: release() deletes the whole file
                continue
            freed += _punch_unused(self.path(e), runs)
        return freed

    def release(self, extents: Iterable[str], referenced: Callable[[str], bool]) -> int:
        """Delete the extents among ``extents`` that no record references any more."""
        removed = 0
        for e in dict.fromkeys(extents):
            if not e or referenced(e):
                continue
            if e in self._pins:
                self._deferred.add(e)
                continue
            try:
                os.unlink(self.path(e))
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def sweep(self, referenced: set[str]) -> int:
        """Delete every file under the root that is not a referenced extent (startup recovery)."""
        removed = 0
        for sub in os.scandir(self.root):
            if not sub.is_dir(follow_symlinks=False):
                _unlink_quietly(sub.path)
                removed += 1
                continue
            for entry in os.scandir(sub.path):
                if entry.name not in referenced or entry.name[:2] != sub.name:
                    _unlink_quietly(entry.path)
                    removed += 1
        return removed

    def count(self) -> int:
        return sum(len(os.listdir(d)) for d in (self.root / p for p in os.listdir(self.root)) if d.is_dir())


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise OSError(f"extent shorter than recorded ({got} < {size} bytes)")
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


_ZEROS = bytes(CHUNK)
_BLOCK = 4096  # holes are punched in whole blocks of the file system
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _punch_unused(path: str, runs: list[tuple[int, int]]) -> int:
    """Punch holes in the file at ``path`` outside the ``(offset, length)`` runs (sorted by offset);
    return the bytes punched. A file system that cannot punch holes keeps the bytes."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        holes, cursor = [], 0
        for offset, length in [*runs, (size, 0)]:
            start, end = -(-cursor // _BLOCK) * _BLOCK, offset // _BLOCK * _BLOCK
            if end > start:
                holes.append((start, end - start))
            cursor = max(cursor, offset + length)
        punched = 0
        for start, length in holes:
            if _LIBC.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, start, length) != 0:
                break  # EOPNOTSUPP and the like: the space stays allocated
            punched += length
        return punched
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return
        os.unlink(path)
    except OSError:
        pass
