"""openbatch.node.safefs: what the server does under directories a task can write never follows a
link the task made, never blocks on a FIFO, and serves what it checked."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openbatch.node import safefs
from openbatch.node.safefs import Owner, UnsafePath

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another account needs root")
OTHER = Owner(65534, 65534)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp_path/root`` (the directory a task owns) next to ``tmp_path/outside`` (what it must not reach)."""
    (tmp_path / "root" / "dir").mkdir(parents=True)
    (tmp_path / "root" / "dir" / "file").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    return tmp_path / "root"


@pytest.fixture
def root(tree: Path) -> Iterator[int]:
    fd = safefs.open_dir(tree)
    yield fd
    os.close(fd)


def test_walk_opens_directories_and_refuses_links_and_files(tree: Path, root: int) -> None:
    os.symlink(tree.parent / "outside", tree / "link")
    with safefs.closing(safefs.walk(root, ["dir"])) as fd:
        assert os.listdir(fd) == ["file"]
    for parts in (["link"], ["dir", "file"], [".."], ["a/b"]):
        with pytest.raises(UnsafePath):
            safefs.walk(root, parts)
    with safefs.closing(safefs.walk(root, ["new", "deeper"], create=True)) as fd:
        assert os.fstat(fd).st_ino == (tree / "new" / "deeper").stat().st_ino


def test_ensure_dir_replaces_what_is_in_the_way(tree: Path, root: int) -> None:
    os.symlink(tree.parent / "outside", tree / "wd")
    os.close(safefs.ensure_dir(root, "wd", None))
    assert (tree / "wd").is_dir() and not (tree / "wd").is_symlink()
    assert (tree.parent / "outside" / "secret").read_text() == "secret"
    (tree / "f").write_text("x")
    os.close(safefs.ensure_dir(root, "f", None))
    assert (tree / "f").is_dir()


def test_create_file_replaces_a_link_and_never_touches_its_target(tree: Path, root: int) -> None:
    os.symlink(tree.parent / "outside" / "secret", tree / "stdout.txt")
    with safefs.closing(safefs.create_file(root, "stdout.txt", None)) as fd:
        os.write(fd, b"mine")
    assert (tree / "stdout.txt").read_text() == "mine" and not (tree / "stdout.txt").is_symlink()
    assert (tree.parent / "outside" / "secret").read_text() == "secret"


def test_a_fifo_never_blocks_the_server(tree: Path, root: int) -> None:
    os.mkfifo(tree / "stdout.txt")
    os.mkfifo(tree / "log")
    os.mkfifo(tree / "read")
    os.close(safefs.create_file(root, "stdout.txt", None))
    assert stat.S_ISREG((tree / "stdout.txt").stat().st_mode)
    os.close(safefs.append_file(root, "log", None))
    assert stat.S_ISREG((tree / "log").stat().st_mode)
    with pytest.raises(UnsafePath):
        safefs.open_beneath(root, str(tree), "read")


def test_append_file_appends_only_to_its_own_regular_file(tree: Path, root: int) -> None:
    (tree / "log").write_text("one\n")
    with safefs.closing(safefs.append_file(root, "log", None)) as fd:
        os.write(fd, b"two\n")
    assert (tree / "log").read_text() == "one\ntwo\n"
    os.symlink(tree.parent / "outside" / "secret", tree / "linked")
    os.link(tree.parent / "outside" / "secret", tree / "hard")
    for name in ("linked", "hard"):
        with safefs.closing(safefs.append_file(root, name, None)) as fd:
            os.write(fd, b"log\n")
        assert (tree / name).read_text() == "log\n"
    assert (tree.parent / "outside" / "secret").read_text() == "secret"


def test_open_beneath_follows_links_that_stay_inside(tree: Path, root: int) -> None:
    os.symlink("file", tree / "dir" / "rel")
    os.symlink("../dir/file", tree / "dir" / "up")
    os.symlink("dir", tree / "down")
    os.symlink(str(tree / "dir" / "file"), tree / "absolute")
    os.symlink("down/rel", tree / "chain")
    for path in ("dir/rel", "dir/up", "down/file", "absolute", "chain", "down/../dir/file"):
        fd, st = safefs.open_beneath(root, str(tree), path)
        with safefs.closing(fd):
            assert os.read(fd, 100) == b"inside", path
    fd, st = safefs.open_beneath(root, str(tree), "")
    os.close(fd)
    assert stat.S_ISDIR(st.st_mode)


@pytest.mark.parametrize("link", ["../outside/secret", "/etc/passwd", "TREE/../outside/secret", "dir/../../outside"])
def test_open_beneath_refuses_links_and_paths_that_leave(tree: Path, root: int, link: str) -> None:
    os.symlink(link.replace("TREE", str(tree)), tree / "leak")
    for path in ("leak", "leak/secret", "dir/../leak", ".."):
        with pytest.raises(UnsafePath) as info:
            fd, _ = safefs.open_beneath(root, str(tree), path)
            os.close(fd)
        assert info.value.errno in (errno.EXDEV, errno.ENOTDIR), path


def test_open_beneath_gives_up_on_link_loops(tree: Path, root: int) -> None:
    os.symlink("b", tree / "a")
    os.symlink("a", tree / "b")
    with pytest.raises(UnsafePath):
        safefs.open_beneath(root, str(tree), "a")


def test_open_beneath_serves_what_it_opened_while_the_path_is_swapped(tree: Path, root: int) -> None:
    """A file swapped for a link to a secret again and again: every open is of the file, never of the secret."""
    secret = tree.parent / "outside" / "secret"
    (tree / "race.f").write_text("public")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            (tree / "race.f").write_text("public")
            os.replace(tree / "race.f", tree / "race")
            os.symlink(secret, tree / "race.l")
            os.replace(tree / "race.l", tree / "race")

    flipper = threading.Thread(target=swap)
    flipper.start()
    served = 0
    try:
        for _ in range(3000):
            try:
                fd, _ = safefs.open_beneath(root, str(tree), "race")
            except OSError:
                continue
            with safefs.closing(fd):
                assert os.read(fd, 100) == b"public"
                served += 1
    finally:
        stop.set()
        flipper.join()
    assert served > 0


def test_entries_lists_without_following(tree: Path, root: int) -> None:
    os.symlink(tree.parent / "outside", tree / "link")
    found = dict(safefs.entries(root))
    assert set(found) == {"dir", "link"}
    assert stat.S_ISLNK(found["link"].st_mode)


@root_only
def test_chown_tree_hands_over_what_is_there_and_nothing_else(tree: Path, root: int) -> None:
    outside = tree.parent / "outside" / "secret"
    os.symlink(outside, tree / "dir" / "link")
    os.link(outside, tree / "hard")
    (tree / "dir" / "sub").mkdir()
    (tree / "dir" / "sub" / "f").write_text("f")
    safefs.chown_tree(root, OTHER)
    for path in (tree / "dir", tree / "dir" / "file", tree / "dir" / "sub", tree / "dir" / "sub" / "f"):
        assert path.stat().st_uid == OTHER.uid, path
    assert os.lstat(tree / "dir" / "link").st_uid == OTHER.uid
    assert outside.stat().st_uid == 0  # neither through the link nor through the hard link


@root_only
def test_chown_tree_survives_a_tree_changing_under_it(tree: Path, root: int) -> None:
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.makedirs(tree / "c" / "a" / "b", exist_ok=True)
            for name in ("1", "2", "3"):
                (tree / "c" / "a" / "b" / name).write_text(name)
            shutil.rmtree(tree / "c", ignore_errors=True)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(200):
            safefs.chown_tree(root, OTHER)
    finally:
        stop.set()
        thread.join()
    assert (tree / "dir" / "file").stat().st_uid == OTHER.uid
