"""Application package extraction (node/apppkg.py): nothing lands outside the target directory,
links in the zip are not made, a link already on the way is not followed."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from openbatch.node import safefs
from openbatch.node.apppkg import check_space, extract
from openbatch.node.layout import PathOutsideNode


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def run_extract(zip_path: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    with safefs.closing(safefs.open_dir(target)) as fd:
        extract(zip_path, fd)


def test_files_directories_and_modes(tmp_path: Path) -> None:
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("a/b/c.txt", b"c")
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o755 << 16
        archive.writestr(info, b"#!/bin/sh\n")
        archive.writestr("empty/", b"")
    run_extract(z, tmp_path / "out")
    assert (tmp_path / "out/a/b/c.txt").read_bytes() == b"c"
    assert os.access(tmp_path / "out/run.sh", os.X_OK)
    assert (tmp_path / "out/empty").is_dir()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt", "a\\..\\..\\evil.txt"])
def test_entries_leaving_the_target_are_refused(tmp_path: Path, name: str) -> None:
    z = make_zip(tmp_path / "slip.zip", {"fine.txt": b"x", name: b"evil"})
    with pytest.raises(PathOutsideNode):
        run_extract(z, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()


def test_link_entries_are_not_made(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "links.zip", {"fine.txt": b"x"}, links={"passwd": "/etc/passwd"})
    run_extract(z, tmp_path / "out")
    assert (tmp_path / "out/fine.txt").exists()
    assert not os.path.lexists(tmp_path / "out/passwd")


def test_a_link_on_the_way_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out/dir").symlink_to(outside)
    z = make_zip(tmp_path / "through.zip", {"dir/x.txt": b"x"})
    with pytest.raises(safefs.UnsafePath):
        run_extract(z, tmp_path / "out")
    assert list(outside.iterdir()) == []



def test_a_package_larger_than_the_free_disk_is_refused_before_writing(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    free = stats.f_bavail * stats.f_frsize
    small, huge = zipfile.ZipInfo("small.txt"), zipfile.ZipInfo("huge.bin")
    small.file_size, huge.file_size = 1, free + (1 << 30)  # what a zip bomb's entries claim
    with safefs.closing(safefs.open_dir(tmp_path)) as fd:
        check_space([small], fd)
        with pytest.raises(OSError, match="free"):
            check_space([small, huge], fd)
