from __future__ import annotations

import os
from pathlib import Path

import pytest

from openbatch.node.layout import NodeLayout, PathOutsideNode, make_task_dir, resolve_under


@pytest.fixture
def layout(tmp_path: Path) -> NodeLayout:
    node = NodeLayout(tmp_path / "node")
    node.create()
    return node


def test_create_makes_azure_tree_and_is_idempotent(layout: NodeLayout) -> None:
    layout.create()
    for name in ("shared", "startup", "applications", "workitems", "fsmounts"):
        assert (layout.root / name).is_dir()
    assert (layout.startup / "wd").is_dir()
    assert layout.exists()


def test_task_dirs_follow_azure_names(layout: NodeLayout) -> None:
    root = layout.root
    assert layout.task_dir("job1", "task1") == root / "workitems" / "job1" / "job-1" / "task1"
    assert layout.job_prep_dir("job1") == root / "workitems" / "job1" / "job-1" / "jobpreparation"
    assert layout.job_release_dir("job1") == root / "workitems" / "job1" / "job-1" / "jobrelease"
    assert layout.job_prep_dir("job1", "prep") == root / "workitems" / "job1" / "job-1" / "prep"
    assert layout.task_dir("j", "t", schedule_id="sched") == root / "workitems" / "sched" / "j" / "t"
    assert layout.startup_task_dir() == root / "startup"


def test_make_task_dir_creates_wd_once_and_again(layout: NodeLayout) -> None:
    task_dir = layout.task_dir("job1", "task1")
    wd = make_task_dir(task_dir)
    assert wd == task_dir / "wd" and wd.is_dir()
    assert make_task_dir(task_dir) == wd
    assert make_task_dir(layout.task_dir("job1", "task2")).is_dir()


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "a\x00b"])
def test_ids_that_are_not_one_name_are_refused(layout: NodeLayout, bad: str) -> None:
    with pytest.raises(PathOutsideNode):
        layout.task_dir("job", bad)
    with pytest.raises(PathOutsideNode):
        layout.task_dir(bad, "task")


def test_resolve_inside(layout: NodeLayout) -> None:
    assert layout.resolve("") == layout.root
    assert layout.resolve(".") == layout.root
    assert layout.resolve("shared/x.txt") == layout.shared / "x.txt"
    assert layout.resolve("startup\\stdout.txt") == layout.startup / "stdout.txt"
    assert layout.resolve("shared//./x") == layout.shared / "x"
    assert layout.resolve("workitems/a%20b") == layout.workitems / "a%20b"


@pytest.mark.parametrize(
    "hostile",
    [
        "..",
        "../etc/passwd",
        "shared/../../etc/passwd",
        "shared/../startup",  # '..' is refused even when it would stay inside
        "/etc/passwd",
        "\\etc\\passwd",
        "shared\\..\\..\\x",
        "shared/\x00/x",
        "%2e%2e/etc/passwd",
        "..%2Fetc%2Fpasswd",
        "..%2fx",
        "shared%5C..%5C..",
        "shared/%00",
    ],
)
def test_resolve_refuses_hostile_paths(layout: NodeLayout, hostile: str) -> None:
    with pytest.raises(PathOutsideNode) as info:
        layout.resolve(hostile)
    assert info.value.code == "PathOutsideNode"


def test_resolve_refuses_symlinks_that_leave_root(layout: NodeLayout, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, layout.shared / "escape")
    os.symlink("/etc/passwd", layout.shared / "passwd")
    with pytest.raises(PathOutsideNode):
        layout.resolve("shared/escape/secret")
    with pytest.raises(PathOutsideNode):
        layout.resolve("shared/escape")
    with pytest.raises(PathOutsideNode):
        layout.resolve("shared/passwd")


def test_resolve_allows_symlinks_that_stay_inside(layout: NodeLayout) -> None:
    (layout.startup / "wd" / "f").write_text("x")
    os.symlink(layout.startup / "wd", layout.shared / "link")
    assert layout.resolve("shared/link/f").read_text() == "x"


def test_resolve_under_a_task_dir(layout: NodeLayout) -> None:
    task_dir = layout.task_dir("j", "t")
    make_task_dir(task_dir)
    assert resolve_under(task_dir, "wd/out.txt") == task_dir / "wd" / "out.txt"
    with pytest.raises(PathOutsideNode):
        resolve_under(task_dir, "../other/stdout.txt")
