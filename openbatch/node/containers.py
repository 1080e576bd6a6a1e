"""Container tasks: which container runtime this host has, and the command line that runs a task in it.

On Azure a pool with ``virtualMachineConfiguration.containerConfiguration`` runs the tasks that have
``containerSettings`` in a container of their image (Docker's ``docker create`` + ``start``), with
``AZ_BATCH_NODE_ROOT_DIR`` mounted at the same path, the task's ``AZ_BATCH_*`` variables and
environment settings set, the task's working directory as the container's (``workingDirectory``
``taskWorkingDirectory``, the default) or the image's own (``containerImageDefault``), and the
container's stdout/stderr in the task's files. Here the same happens with the first runtime found
on the host whose ``info`` answers: ``podman``, then ``docker`` (a docker client without a daemon
does not count). Without one, container pools are refused as before.

Hosts differ in what a container may be given; ``OPENBATCH_CONTAINER_OPTIONS`` (options before
``run``, e.g. ``--runtime runc``) and ``OPENBATCH_CONTAINER_RUN_OPTIONS`` (options of ``run``, e.g.
``--ulimit nofile=1024:1024``) in the server's environment are added to every container command.
``OPENBATCH_CONTAINER_RUNTIME`` names the runtime (``podman``, ``docker``, or ``none``) instead of
looking for one.

The task's command line becomes ``/bin/sh -c SCRIPT openbatch-container IMAGE ARGS...``: the script
(run by the task's own account, in its working directory) passes every ``AZ_BATCH_*`` variable and
the named settings into ``RUNTIME run --rm`` and execs it, so stdout, stderr and the exit code are the
container's. The container is named after the node, the task and the attempt. Killing the task
(terminate, wall-clock timeout, job end) kills the runtime's client, which does not stop the
container by itself: a reaper started with the client (in a session of its own, so a task's sweep
leaves it be) waits for the client to end and then removes the container (``rm -f``), within half a
second; a container that ended by itself is gone already (``--rm``).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

PROBE_SECONDS = 20.0


@dataclass(frozen=True)
class Runtime:
    name: str  # podman | docker
    path: str
    options: tuple[str, ...] = ()  # before "run"
    run_options: tuple[str, ...] = ()  # after "run"


@functools.cache
def runtime() -> Runtime | None:
    """The container runtime of this host (probed once), or None."""
    wanted = os.environ.get("OPENBATCH_CONTAINER_RUNTIME", "").strip().lower()
    if wanted == "none":
        return None
    options = tuple(shlex.split(os.environ.get("OPENBATCH_CONTAINER_OPTIONS", "")))
    run_options = tuple(shlex.split(os.environ.get("OPENBATCH_CONTAINER_RUN_OPTIONS", "")))
    for name in ([wanted] if wanted else ["podman", "docker"]):
        path = shutil.which(name)
        if path is None:
            continue
        try:
            probe = subprocess.run([path, *options, "info"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=PROBE_SECONDS, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return Runtime(name, path, options, run_options)
    return None


_SCRIPT = r"""
ob_image=$1; shift
ob_name=$OPENBATCH_CONTAINER_NAME-$$
setsid /bin/sh -c 'p=$1; shift; while kill -0 "$p" 2>/dev/null; do sleep 0.5; done; exec "$@"' \
    openbatch-container-reaper $$ @RUNTIME@ rm -f @NOW@ "$ob_name" </dev/null >/dev/null 2>&1 &
set -- --rm --name "$ob_name" -v "$AZ_BATCH_NODE_ROOT_DIR:$AZ_BATCH_NODE_ROOT_DIR" \
    @WORKDIR@ @NAMES@ @RUN_OPTIONS@ @USER_OPTIONS@ "$ob_image" "$@"
for ob_var in $(env | sed -n 's/^\(AZ_BATCH_[A-Za-z0-9_]*\)=.*/\1/p'); do set -- -e "$ob_var" "$@"; done
exec @RUNTIME@ run "$@"
"""


def command_line(rt: Runtime, image: str, command: Sequence[str], *, run_options: str = "",
                 image_workdir: bool = False, settings: Sequence[str] = ()) -> str:
    """The task command line that runs ``command`` (already split) in a container of ``image``.

    ``run_options``: the task's ``containerRunOptions`` (split like a shell would); ``image_workdir``:
    ``workingDirectory`` ``containerImageDefault``; ``settings``: names of the task's environment
    settings, passed into the container with the ``AZ_BATCH_*`` variables."""
    script = (_SCRIPT
              .replace("@WORKDIR@", "" if image_workdir else '-w "$AZ_BATCH_TASK_WORKING_DIR"')
              .replace("@NAMES@", " ".join(f"-e {shlex.quote(n)}" for n in settings))
              .replace("@RUN_OPTIONS@", shlex.join(rt.run_options))
              .replace("@USER_OPTIONS@", shlex.join(shlex.split(run_options)))
              .replace("@RUNTIME@", shlex.join([rt.path, *rt.options]))
              .replace("@NOW@", "-t 0" if rt.name == "podman" else ""))  # docker's rm -f kills at once
    return shlex.join(["/bin/sh", "-c", script, "openbatch-container", image, *command])


def container_name(node_id: str, task_id: str) -> str:
    """A container name the runtimes accept ([a-zA-Z0-9][a-zA-Z0-9_.-]*), unique per node and task."""
    raw = f"openbatch-{node_id}-{task_id}"
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in raw)[:200]
