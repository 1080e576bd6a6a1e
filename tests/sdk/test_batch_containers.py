"""Container tasks, driven by azure-batch 15.x against a live server on a host with podman (Debian's,
with an image imported from a tarball of this host's own /bin/sh and friends: there is no registry
to pull from): a task with containerSettings on a container pool runs in a container of its image,
with its AZ_BATCH_* variables and environment settings, its working directory mounted as on Azure,
its containerRunOptions, its stdout and exit code; workingDirectory containerImageDefault runs in the
image's own directory. Skipped, saying why, where no container runtime can run a container."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m

from tests.helpers.pools import IMAGE as VM
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

IMAGE = "localhost/openbatch-test:1"
PROGRAMS = ("/bin/sh", "/bin/cat", "/bin/echo", "/bin/pwd", "/bin/hostname", "/bin/ls", "/usr/bin/env")
# What to try, in order: the runtime's defaults, then runc with limits a restricted host allows.
ATTEMPTS: tuple[dict[str, str], ...] = ({}, {"OPENBATCH_CONTAINER_OPTIONS": "--runtime runc",
                 "OPENBATCH_CONTAINER_RUN_OPTIONS": "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"})


def _libraries(program: str) -> list[str]:
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=False).stdout
    return [w for line in out.splitlines() for w in line.split() if w.startswith("/")]


def _build_image(podman: str, where: Path) -> None:
    """A tiny image of this host's own programs (no registry is reachable)."""
    tar = where / "rootfs.tar"
    with tarfile.open(tar, "w") as out:
        for path in {p for program in PROGRAMS for p in (program, *_libraries(program))}:
            out.add(os.path.realpath(path), arcname=path.lstrip("/"))
        for empty in ("tmp", "proc", "dev", "sys", "etc"):
            info = tarfile.TarInfo(empty)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            out.addfile(info)
    subprocess.run([podman, "import", str(tar), IMAGE], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    podman = shutil.which("podman")
    if podman is None or os.geteuid() != 0:
        pytest.skip("podman (Debian package) and root are needed to run container tasks")
    _build_image(podman, tmp_path_factory.mktemp("image"))
    errors = []
    for env in ATTEMPTS:
        options = env.get("OPENBATCH_CONTAINER_OPTIONS", "").split()
        run_options = env.get("OPENBATCH_CONTAINER_RUN_OPTIONS", "").split()
        probe = subprocess.run([podman, *options, "run", "--rm", *run_options, IMAGE, "/bin/echo", "ok"],
                               capture_output=True, text=True, timeout=120, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "ok":
            return {"OPENBATCH_CONTAINER_RUNTIME": "podman", **env}
        errors.append(probe.stderr.strip().splitlines()[-1:] or [f"exit {probe.returncode}"])
    pytest.skip(f"podman cannot run a container on this host: {errors}")


@pytest.fixture(scope="module")
def server(runtime_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("server"), env=runtime_env).start()
    yield srv
    srv.stop()


def _wait_completed(client: BatchClient, job: str, task: str) -> m.BatchTask:
    return wait_for(lambda: (t := client.get_task(job, task)).state == "completed" and t, f"task {task}",
                    timeout=120)


def _out(client: BatchClient, job: str, task: str, name: str = "stdout.txt") -> str:
    return b"".join(client.download_task_file(job, task, name)).decode()


def test_container_tasks(client: BatchClient) -> None:
    vm = m.VirtualMachineConfiguration(
        image_reference=VM.image_reference, node_agent_sku_id=VM.node_agent_sku_id,
        container_configuration=m.BatchContainerConfiguration(type="dockerCompatible",
                                                             container_image_names=[IMAGE]))
    client.create_pool(m.BatchPoolCreateOptions(id="boxes", vm_size="standard_d2s_v3",
                                                virtual_machine_configuration=vm, target_dedicated_nodes=1))
    client.create_job(m.BatchJobCreateOptions(id="boxjob", pool_info=m.BatchPoolInfo(pool_id="boxes")))
    client.create_tasks("boxjob", [
        m.BatchTaskCreateOptions(
            id="inside", environment_settings=[m.EnvironmentSetting(name="MYVAR", value="from the task")],
            command_line="/bin/sh -c 'echo in $(hostname) $AZ_BATCH_TASK_ID $MYVAR; pwd; echo made > made.txt'",
            container_settings=m.BatchTaskContainerSettings(image_name=IMAGE, container_run_options="--hostname boxed")),
        m.BatchTaskCreateOptions(
            id="imagedir", command_line="/bin/sh -c 'pwd; exit 3'",
            container_settings=m.BatchTaskContainerSettings(image_name=IMAGE,
                                                            working_directory="containerImageDefault")),
        m.BatchTaskCreateOptions(id="onhost", command_line="/bin/sh -c 'test -x /usr/bin/apt-get && echo host'"),
    ])
    task = _wait_completed(client, "boxjob", "inside")
    stdout = _out(client, "boxjob", "inside")
    assert task.execution_info is not None and task.execution_info.exit_code == 0, (stdout, _out(
        client, "boxjob", "inside", "stderr.txt"))
    lines = stdout.splitlines()
    assert lines[0] == "in boxed inside from the task"
    assert task.node_info is not None and lines[1].endswith(f"{task.node_info.task_root_directory}/wd")
    assert _out(client, "boxjob", "inside", "wd/made.txt") == "made\n"  # written in the container, kept on the node

    other = _wait_completed(client, "boxjob", "imagedir")
    assert other.execution_info is not None and other.execution_info.exit_code == 3
    assert _out(client, "boxjob", "imagedir") == "/\n"
    # A task without containerSettings runs on the node itself (the image has no apt-get).
    on_host = _wait_completed(client, "boxjob", "onhost").execution_info
    assert on_host is not None and on_host.exit_code == 0
    assert _out(client, "boxjob", "onhost") == "host\n"


def test_terminated_container_task_leaves_no_container(client: BatchClient, runtime_env: dict[str, str]) -> None:
    """Terminating the task kills the runtime's client; the container it ran is removed with it."""
    client.create_task("boxjob", m.BatchTaskCreateOptions(
        id="spin", command_line="/bin/sh -c 'while :; do :; done'",
        container_settings=m.BatchTaskContainerSettings(image_name=IMAGE)))
    podman = [shutil.which("podman") or "podman", *runtime_env.get("OPENBATCH_CONTAINER_OPTIONS", "").split()]

    def containers() -> list[str]:
        out = subprocess.run([*podman, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        return [n for n in out.split() if n.endswith("-boxjob-spin") or "-boxjob-spin-" in n]

    wait_for(lambda: client.get_task("boxjob", "spin").state == "running" and containers(), "the container running",
             timeout=60)
    client.terminate_task("boxjob", "spin")
    wait_for(lambda: not containers(), "the container to be removed", timeout=30, every=0.5)
