from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from openbatch.node import run as run_module
from openbatch.node.identity import UserSpec, grant_traverse, owner_of, resolve_user, share_dir
from openbatch.node.layout import NodeLayout
from openbatch.node.safefs import Owner
from tests.node.tasks import start_task

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def test_not_root_means_no_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert resolve_user("admin") is None
    assert resolve_user("nonadmin") is None


@root_only
def test_admin_is_root_and_nonadmin_is_unprivileged() -> None:
    admin = resolve_user("Admin")
    assert admin is not None and admin.uid == 0 and admin.is_admin
    user = resolve_user("nonAdmin")
    assert user is not None and user.uid != 0 and user.gid != 0 and not user.is_admin
    assert resolve_user(None) == user
    assert user.name in ("_azbatch", "nobody")


@pytest.fixture
def node() -> Iterator[NodeLayout]:
    """A node under a directory every account may traverse (pytest's tmp dirs are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="openbatch-node-"))
    layout = NodeLayout(top / "data" / "nodes" / "n1")
    layout.create()
    os.chmod(top, 0o700)
    yield layout
    run_module.close_spawners()
    shutil.rmtree(top)


async def _run_as(user: UserSpec | None, layout: NodeLayout, command: str) -> tuple[int | None, str, str]:
    task_dir = layout.task_dir("job", "task")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(task_dir / "wd")}
    proc = await start_task(command, task_dir, layout=layout, user=user, env=env)
    result = await proc.wait(30)
    return result.exit_code, (task_dir / "stdout.txt").read_text(), (task_dir / "stderr.txt").read_text()


def _via(via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start non-admin tasks through the helper, setpriv, or Popen(user=...)."""
    if via != "spawner":
        monkeypatch.setattr(run_module, "USE_SPAWNER", False)
    if via == "popen-user":
        monkeypatch.setattr(run_module, "_setpriv", lambda: None)
    elif via == "setpriv" and run_module._setpriv() is None:
        pytest.skip("setpriv is not installed")


VIAS = ["spawner", "setpriv", "popen-user"]


@root_only
@pytest.mark.parametrize("via", VIAS)
def test_nonadmin_task_runs_as_the_unprivileged_account(node: NodeLayout, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _via(via, monkeypatch)
    user = resolve_user("nonadmin")
    assert user is not None
    grant_traverse(node.root, up_to=node.root.parents[2])
    share_dir(node.shared)
    command = (f"/bin/sh -c 'id -u; id -g; id -G; echo made > out.txt; echo shared > {node.shared}/s.txt; "
               f"cat /etc/shadow >/dev/null 2>&1 || echo denied'")
    code, out, err = uvloop.run(_run_as(user, node, command))
    assert code == 0, err
    uid, gid, groups, denied = out.split("\n")[:4]
    assert (int(uid), int(gid)) == (user.uid, user.gid)
    assert groups.split() == [str(user.gid)]
    assert denied == "denied"
    wd = node.task_dir("job", "task") / "wd"
    assert (wd / "out.txt").stat().st_uid == user.uid
    assert (node.shared / "s.txt").read_text() == "shared\n"
    assert (node.task_dir("job", "task") / "stdout.txt").stat().st_uid == user.uid


@root_only
def test_admin_task_runs_as_root(node: NodeLayout) -> None:
    code, out, _ = asyncio.run(_run_as(resolve_user("admin"), node, "id -u"))
    assert code == 0 and out.strip() == "0"


@root_only
@pytest.mark.parametrize("via", VIAS)
def test_missing_program_is_still_detected_when_switching(node: NodeLayout, via: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from openbatch.node.run import CommandError

    _via(via, monkeypatch)
    grant_traverse(node.root, up_to=node.root.parents[2])
    with pytest.raises(CommandError) as info:
        asyncio.run(_run_as(resolve_user("nonadmin"), node, "no-such-program-xyz"))
    assert info.value.code == "CommandProgramNotFound"


@root_only
@pytest.mark.parametrize("via", VIAS)
def test_a_bare_program_is_looked_up_as_the_account(node: NodeLayout, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _via(via, monkeypatch)
    user = resolve_user("nonadmin")
    assert user is not None
    grant_traverse(node.root, up_to=node.root.parents[2])
    for name, mode in (("closed", 0o700), ("locked", 0o755), ("open", 0o755)):
        directory = node.root / name
        directory.mkdir(mode=0o700 if name == "locked" else 0o755)
        (directory / "probe").write_text(f"#!/bin/sh\necho {name}\n")
        (directory / "probe").chmod(mode)  # root may run all three; the account only the last

    async def go() -> tuple[int | None, str, str]:
        task_dir = node.task_dir("job", "task")
        env = {"PATH": f"{node.root}/closed:{node.root}/locked:{node.root}/open:/usr/bin:/bin"}
        proc = await start_task("probe", task_dir, layout=node, user=user, env=env)
        result = await proc.wait(30)
        return result.exit_code, (task_dir / "stdout.txt").read_text(), (task_dir / "stderr.txt").read_text()

    code, out, err = asyncio.run(go())
    assert (code, out) == (0, "open\n"), err


@root_only
def test_tasks_own_their_files_admin_tasks_belong_to_root() -> None:
    user = resolve_user("nonadmin")
    assert user is not None
    assert owner_of(user) == Owner(user.uid, user.gid)
    assert owner_of(resolve_user("admin")) == Owner(0, 0)


def test_no_owner_to_hand_files_to_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    assert owner_of(None) is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert owner_of(UserSpec(name="x", uid=5, gid=5, is_admin=False)) is None


def test_grant_traverse_adds_only_search_for_others(tmp_path: Path) -> None:
    top = tmp_path / "a"
    deep = top / "b" / "c"
    deep.mkdir(parents=True)
    for path in (tmp_path, top, top / "b", deep):
        path.chmod(0o700)
    grant_traverse(deep, up_to=top)
    for path in (top, top / "b", deep):
        assert stat.S_IMODE(path.stat().st_mode) == 0o701
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700  # nothing above up_to changes
