"""The Files API over a node's directory: list, open (stat + read from one descriptor), delete.

Tasks write under the node's directory and may plant links or swap files for links while a
request is served. Paths from requests are checked lexically (``layout.relative_parts``), then
resolved with :func:`openbatch.node.safefs.open_beneath`, one component at a time from
descriptors, following links only while they stay inside the node (a link out of it is refused,
as is a path that climbs out). A file is opened once and everything said about it — its size,
its times, its bytes — comes from that descriptor, never from the path again. Listings report
what a link inside the node points at, and skip links that lead out of it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from openbatch.compute.base import FileAccessError, NodeFile
from openbatch.node import safefs
from openbatch.node.layout import PathOutsideNode, relative_parts

READ_CHUNK = 256 * 1024


def _node_file(path: str, st: os.stat_result) -> NodeFile:
    return NodeFile(path=path, is_directory=stat.S_ISDIR(st.st_mode), size=st.st_size, mtime=st.st_mtime,
                    ctime=st.st_ctime, mode=st.st_mode)


class OpenNodeFile:
    """A file (or directory) of a node, opened once: ``info`` and ``read`` both come from it."""

    def __init__(self, fd: int, info: NodeFile):
        self.info = info
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)  # closed even if never read

    def close(self) -> None:
        self._finalizer()

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (b"" at the end): a file read piece by piece from afar."""
        return os.pread(self._fd, size, offset)

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (inclusive, None = to the end), streamed; closes the file after."""
        try:
            offset = max(0, start)
            left = None if end is None else max(0, end - offset + 1)
            while left is None or left > 0:
                chunk = os.pread(self._fd, READ_CHUNK if left is None else min(READ_CHUNK, left), offset)
                if not chunk:
                    break
                offset += len(chunk)
                if left is not None:
                    left -= len(chunk)
                yield chunk
                await asyncio.sleep(0)
        finally:
            self.close()


class NodeFiles:
    """The files of one node, rooted at ``root``."""

    def __init__(self, root: Path):
        self.root = root

    def _parts(self, path: str) -> list[str]:
        try:
            return relative_parts(path)
        except PathOutsideNode as exc:
            raise FileAccessError("PathOutsideNode", str(exc)) from None

    def _open(self, root_fd: int, parts: list[str]) -> tuple[int, os.stat_result]:
        try:
            return safefs.open_beneath(root_fd, str(self.root), "/".join(parts))
        except safefs.UnsafePath as exc:
            if exc.errno == errno.EXDEV:
                raise FileAccessError("PathOutsideNode", "The path leads out of the node's directory.") from None
            raise FileAccessError("FileNotFound", "The file does not exist.") from None
        except OSError:
            raise FileAccessError("FileNotFound", "The file does not exist.") from None

    def _root(self) -> int:
        try:
            return safefs.open_dir(self.root)
        except OSError:
            raise FileAccessError("FileNotFound", "The node has no files.") from None

    def open(self, path: str) -> OpenNodeFile:
        parts = self._parts(path)
        with safefs.closing(self._root()) as root:
            fd, st = self._open(root, parts)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            os.close(fd)
            raise FileAccessError("FileNotFound", "The file does not exist.")
        return OpenNodeFile(fd, _node_file("/".join(parts), st))

    def stat(self, path: str) -> NodeFile:
        opened = self.open(path)
        opened.close()
        return opened.info

    def listing(self, base: str, recursive: bool) -> list[NodeFile]:
        parts = self._parts(base)
        with safefs.closing(self._root()) as root:
            fd, st = self._open(root, parts)
            with safefs.closing(fd):
                if not stat.S_ISDIR(st.st_mode):
                    raise FileAccessError("FileNotFound", "The directory does not exist.")
                return self._listing(root, fd, "/".join(parts), recursive)

    def _listing(self, root: int, top: int, prefix: str, recursive: bool) -> list[NodeFile]:
        out: list[NodeFile] = []
        pending = [(os.dup(top), prefix)]
        try:
            while pending:
                fd, where = pending.pop()
                with safefs.closing(fd):
                    for name, st in safefs.entries(fd):
                        rel = f"{where}/{name}" if where else name
                        if stat.S_ISLNK(st.st_mode):
                            self._add_link(out, root, rel)
                            continue
                        out.append(_node_file(rel, st))
                        if recursive and stat.S_ISDIR(st.st_mode):
                            try:
                                pending.append((safefs.walk(fd, [name]), rel))
                            except OSError:
                                continue  # gone, or swapped for a link since it was listed
        finally:
            for fd, _ in pending:
                os.close(fd)
        return out

    def _add_link(self, out: list[NodeFile], root: int, rel: str) -> None:
        """A link is listed as what it points at inside the node; one leading out is left out."""
        try:
            fd, st = safefs.open_beneath(root, str(self.root), rel)
        except OSError:
            return
        os.close(fd)
        out.append(_node_file(rel, st))

    def delete(self, path: str, recursive: bool) -> None:
        parts = self._parts(path)
        if not parts:
            raise FileAccessError("PathOutsideNode", "The node's root directory cannot be deleted.")
        with safefs.closing(self._root()) as root:
            fd, st = self._open(root, parts[:-1])
        with safefs.closing(fd):
            if not stat.S_ISDIR(st.st_mode):
                raise FileAccessError("FileNotFound", "The file does not exist.")
            _delete_entry(fd, parts[-1], recursive)


def _delete_entry(parent: int, name: str, recursive: bool) -> None:
    """Remove ``name`` of the directory ``parent``: a link itself, never what it points at."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
        elif recursive:
            safefs.rmtree_at(parent, name)
        else:
            os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        raise FileAccessError("FileNotFound", "The file does not exist.") from None
    except OSError as exc:
        code = "DirectoryNotEmpty" if exc.errno == errno.ENOTEMPTY else "FileOperationFailed"
        raise FileAccessError(code, exc.strerror or "The file cannot be deleted.") from None
