from __future__ import annotations

from pathlib import Path

import pytest

from openbatch.node.layout import NodeLayout, PathOutsideNode, relative_parts


@pytest.fixture
def layout(tmp_path: Path) -> NodeLayout:
    node = NodeLayout(tmp_path / "node")
    node.create()
    return node


def test_create_makes_azure_tree_and_is_idempotent(layout: NodeLayout) -> None:
    layout.create()
    for name in ("shared", "startup", "applications", "workitems", "fsmounts"):
        assert (layout.root / name).is_dir()
    assert not (layout.startup / "wd").exists()  # the start task's to make, safely
    assert layout.exists()


def test_task_dirs_follow_azure_names(layout: NodeLayout) -> None:
    root = layout.root
    assert layout.task_dir("job1", "task1") == root / "workitems" / "job1" / "job-1" / "task1"
    assert layout.job_prep_dir("job1") == root / "workitems" / "job1" / "job-1" / "jobpreparation"
    assert layout.job_release_dir("job1") == root / "workitems" / "job1" / "job-1" / "jobrelease"
    assert layout.job_prep_dir("job1", "prep") == root / "workitems" / "job1" / "job-1" / "prep"
    assert layout.task_dir("j", "t", schedule_id="sched") == root / "workitems" / "sched" / "j" / "t"
    # a job schedule's job says so in its id, as Azure names it
    assert layout.task_dir("sched:job-2", "t") == root / "workitems" / "sched" / "job-2" / "t"
    assert layout.job_home("sched:job-2") == root / "workitems" / "sched" / "job-2"
    assert layout.job_home("j") == root / "workitems" / "j"
    assert layout.startup_task_dir() == root / "startup"


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "a\x00b"])
def test_ids_that_are_not_one_name_are_refused(layout: NodeLayout, bad: str) -> None:
    with pytest.raises(PathOutsideNode):
        layout.task_dir("job", bad)
    with pytest.raises(PathOutsideNode):
        layout.task_dir(bad, "task")


def test_relative_parts_inside() -> None:
    assert relative_parts("") == []
    assert relative_parts(".") == []
    assert relative_parts("shared/x.txt") == ["shared", "x.txt"]
    assert relative_parts("startup\\stdout.txt") == ["startup", "stdout.txt"]
    assert relative_parts("shared//./x") == ["shared", "x"]
    assert relative_parts("workitems/a%20b") == ["workitems", "a%20b"]


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
def test_relative_parts_refuses_hostile_paths(hostile: str) -> None:
    with pytest.raises(PathOutsideNode) as info:
        relative_parts(hostile)
    assert info.value.code == "PathOutsideNode"
