"""File operations under directories a task can write, that never follow a link the task made.

A non-admin task owns its task directory (``stdout.txt``, ``wd/``, ...) and, for a non-admin start
task, the node's ``startup/``: it can put links there, or swap a file for a link while the
server (root) works in it. Everything the server opens, creates, chowns, lists or removes below
such a directory goes through this module:

- paths are walked one component at a time from a directory descriptor (``openat``), each
  component opened with ``O_NOFOLLOW``, so a link anywhere on the way is never followed unless
  the caller asks to follow links that stay inside a root (the Files API), which is resolved
  here component by component, never by the kernel;
- files are opened with ``O_NONBLOCK`` (a FIFO planted in place of a file cannot block the
  server) and checked on the descriptor (``fstat``): a regular file, one link, as expected;
- what the server then reads, writes, chowns or serves is that descriptor, never the path again.

The directories above a task directory (the node root, ``workitems/{job}/job-1``) belong to the
server and are not writable by tasks; they are opened by path (without following a final link).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_LINKS = 40  # as the kernel's own limit on links followed in one resolution


class UnsafePath(OSError):
    """A path that leaves its root, crosses a link, or names something that is not what was expected."""

    def __init__(self, message: str, err: int = errno.ELOOP):
        super().__init__(err, message)


@dataclass(frozen=True)
class Owner:
    """The account the server hands what it creates or checks to."""

    uid: int
    gid: int


def split(relative: str) -> list[str]:
    """The components of a relative, '/'-separated path ('' and '.' dropped); ``..`` is kept."""
    return [part for part in relative.replace("\\", "/").split("/") if part not in ("", ".")]


def open_dir(path: str | os.PathLike[str]) -> int:
    """A directory the server owns, by path; its last component is not followed if it is a link."""
    return os.open(path, DIR_FLAGS)


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _is_link_error(exc: OSError) -> bool:
    return exc.errno in (errno.ELOOP, errno.EMLINK)


def walk(dir_fd: int, parts: Sequence[str], *, create: bool = False, owner: Owner | None = None,
         mode: int = 0o755) -> int:
    """The directory ``dir_fd/parts...``, each component opened without following links.

    ``create`` makes missing directories (handed to ``owner``). A link or a non-directory on the
    way is UnsafePath; ``..`` is refused (callers resolve paths lexically first).
    """
    fd, opened = dir_fd, False
    try:
        for name in parts:
            if name in ("..", "") or "/" in name or "\x00" in name:
                raise UnsafePath(f"invalid path component {name!r}", errno.EINVAL)
            child = _open_child_dir(fd, name, create, owner, mode)
            if opened:
                os.close(fd)
            fd, opened = child, True
        return fd if opened else os.dup(dir_fd)
    except BaseException:
        if opened:
            os.close(fd)
        raise


def _open_child_dir(fd: int, name: str, create: bool, owner: Owner | None, mode: int) -> int:
    made = False
    if create:
        try:
            os.mkdir(name, mode, dir_fd=fd)
            made = True
        except FileExistsError:
            pass
    try:
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if _is_link_error(exc) or exc.errno == errno.ENOTDIR:
            raise UnsafePath(f"{name!r} is a link or not a directory", exc.errno or errno.ELOOP) from None
        raise
    if made and owner is not None:
        os.fchown(child, owner.uid, owner.gid)
    return child


def ensure_dir(dir_fd: int, name: str, owner: Owner | None, mode: int = 0o755) -> int:
    """The directory ``name`` in ``dir_fd``, made if missing; whatever else is there under that name
    (a link, a file) is removed first. Handed to ``owner`` (the directory itself, not its contents)."""
    try:
        fd = walk(dir_fd, [name], create=True, mode=mode)
    except UnsafePath:
        remove(dir_fd, name)
        fd = walk(dir_fd, [name], create=True, mode=mode)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)
    return fd


def remove(dir_fd: int, name: str) -> None:
    """Remove the entry ``name`` of ``dir_fd`` whatever it is (a directory with its tree), never
    following a link. Missing is fine."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            rmtree_at(dir_fd, name)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def rmtree_at(dir_fd: int, name: str) -> None:
    """Delete the directory tree ``name`` of ``dir_fd`` without following links in it."""
    shutil.rmtree(name, dir_fd=dir_fd)


def create_file(dir_fd: int, name: str, owner: Owner | None, *, mode: int = 0o644, exclusive: bool = False) -> int:
    """A new, empty regular file ``name`` in ``dir_fd`` opened for writing (what was there under
    that name — a file, a link, a FIFO — is removed first), handed to ``owner``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        if exclusive:
            raise
        remove(dir_fd, name)
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    try:
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        return fd
    except BaseException:
        os.close(fd)
        raise


def append_file(dir_fd: int, name: str, owner: Owner | None, *, mode: int = 0o644) -> int:
    """``name`` in ``dir_fd`` opened for appending, created if missing. Only a regular file with a
    single link is appended to; anything else in its place (a link, a hard link to another file, a
    FIFO, a directory) is replaced by a new empty file."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        if not (_is_link_error(exc) or exc.errno in (errno.EISDIR, errno.ENXIO)):
            raise
        fd = -1
    if fd >= 0:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            if owner is not None and (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
                os.fchown(fd, owner.uid, owner.gid)
            return fd
        os.close(fd)
    return create_file(dir_fd, name, owner, mode=mode)


# --- resolving inside a root, links included (the Files API) ------------------------------------


def open_beneath(root_fd: int, root_path: str, relative: str) -> tuple[int, os.stat_result]:
    """Open ``relative`` under the root (read-only) following links only while they stay inside it.

    Resolution is done here, one component at a time from descriptors, never by the kernel
    following a link: each step opens with ``O_NOFOLLOW``; a link met on the way is read
    (``readlinkat``) and its target resolved in turn — relative to the directory holding it, or,
    if absolute, only when it names a place under ``root_path``. A path or link that would leave
    the root is UnsafePath. Returns the descriptor and its ``fstat`` (a directory or a file).
    """
    stack = [os.dup(root_fd)]
    todo = split(relative)
    todo.reverse()
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) == 1:
                    raise UnsafePath("the path leaves its root", errno.EXDEV)
                os.close(stack.pop())
                continue
            target = _step(stack, name)
            if target is None:
                continue
            links += 1
            if links > MAX_LINKS:
                raise UnsafePath("too many links")
            _follow(stack, todo, target, root_path)
        fd = os.dup(stack[-1])
        return fd, os.fstat(fd)
    finally:
        for fd in stack:
            os.close(fd)


def _step(stack: list[int], name: str) -> str | None:
    """Descend into ``name`` (pushed on ``stack``); its target instead when it is a link."""
    try:
        fd = os.open(name, os.O_RDONLY | FILE_FLAGS, dir_fd=stack[-1])
    except OSError as exc:
        if not _is_link_error(exc):
            raise
        return os.readlink(name, dir_fd=stack[-1])
    st = os.fstat(fd)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        os.close(fd)
        raise UnsafePath(f"{name!r} is neither a file nor a directory", errno.EINVAL)
    stack.append(fd)
    return None


def _follow(stack: list[int], todo: list[str], target: str, root_path: str) -> None:
    """Queue the components of a link's ``target``; an absolute target restarts at the root."""
    if target.startswith("/"):
        root = root_path.rstrip("/")
        if target != root and not target.startswith(root + "/"):
            raise UnsafePath("a link leads out of the root", errno.EXDEV)
        target = target[len(root):]
        while len(stack) > 1:
            os.close(stack.pop())
    todo.extend(reversed(split(target)))
    # A file met half-way is not a directory to go on from.
    if todo and not stat.S_ISDIR(os.fstat(stack[-1]).st_mode):
        raise UnsafePath("not a directory", errno.ENOTDIR)


def entries(dir_fd: int) -> Iterator[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of a directory descriptor; entries vanishing meanwhile are skipped."""
    with closing(os.dup(dir_fd)) as fd:
        names = os.listdir(fd)
    for name in names:
        try:
            yield name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue


# --- ownership ------------------------------------------------------------------------------------


def chown_tree(dir_fd: int, owner: Owner, max_depth: int = 256) -> None:
    """Hand everything under ``dir_fd`` to ``owner``: links are changed themselves, never followed;
    entries that vanish meanwhile are skipped; a file with more than one link is left alone (it
    may be a hard link to a file elsewhere); nothing deeper than ``max_depth`` is visited."""
    pending = [(os.dup(dir_fd), 0)]
    try:
        while pending:
            fd, depth = pending.pop()
            with closing(fd):
                for name in _chown_entries(fd, owner):
                    if depth < max_depth:
                        with contextlib.suppress(FileNotFoundError, UnsafePath):  # gone, or swapped for a link
                            pending.append((walk(fd, [name]), depth + 1))
    finally:
        for fd, _ in pending:
            os.close(fd)


def _chown_entries(dir_fd: int, owner: Owner) -> list[str]:
    """chown the entries of one directory; the names of its subdirectories."""
    subdirs = []
    for name, st in entries(dir_fd):
        is_dir = stat.S_ISDIR(st.st_mode)
        if (st.st_uid, st.st_gid) != (owner.uid, owner.gid) and (is_dir or st.st_nlink == 1):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, owner.uid, owner.gid, dir_fd=dir_fd, follow_symlinks=False)
        if is_dir:
            subdirs.append(name)
    return subdirs
