"""The engine's container tasks: a task with ``containerSettings`` on a container pool runs in a container.

The pool must have ``virtualMachineConfiguration.containerConfiguration`` (accepted only when the
host has a container runtime, node/containers.py); a task with ``containerSettings`` on any other
pool fails before it starts with ``ContainerPoolNotSupported`` (domain/execution.py), as on Azure,
never silently on the host. Tasks without ``containerSettings`` on a container pool run on the node
as usual. The run's command line becomes the runtime's ``run`` of the task's image
(node/containers.py); the runtime is started as root, as Azure's node agent starts Docker, and the
task's command runs as the image's user inside.
"""

from __future__ import annotations

import dataclasses

from openbatch.batch.domain import execution as ex
from openbatch.batch.engine_core import Doc
from openbatch.compute.base import RunSpec
from openbatch.node import containers
from openbatch.node.run import CommandError, split_command_line

MULTI = "openbatch does not run multi-instance tasks in containers; run mpirun from a task on the nodes."
NO_RUNTIME = "The pool's container runtime is not available on this host (no working podman or docker)."


def containerize(spec: RunSpec, task: Doc, pool: Doc) -> RunSpec:
    """``spec`` run in the task's container, or refused; unchanged for a task without containerSettings."""
    settings = task.get("containerSettings")
    if not isinstance(settings, dict) or spec.refusal is not None:
        return spec
    if not (pool.get("virtualMachineConfiguration") or {}).get("containerConfiguration"):
        return spec  # refused by ex.container_refusal already
    if task.get("multiInstanceSettings"):
        return dataclasses.replace(spec, refusal=ex.failure(ex.USER_ERROR, "ContainerPoolNotSupported", MULTI))
    rt = containers.runtime()
    if rt is None:
        return dataclasses.replace(spec, refusal=ex.failure(ex.USER_ERROR, "ContainerPoolNotSupported", NO_RUNTIME))
    try:
        argv = split_command_line(spec.command_line)
    except CommandError as exc:
        return dataclasses.replace(spec, refusal=ex.failure(ex.USER_ERROR, exc.code, exc.message))
    names = [str(s.get("name")) for s in spec.environment if s.get("name")]
    name = containers.container_name(spec.node_id, f"{spec.job_id}-{spec.task_id}")
    line = containers.command_line(
        rt, str(settings.get("imageName") or ""), argv, run_options=str(settings.get("containerRunOptions") or ""),
        image_workdir=settings.get("workingDirectory") == "containerImageDefault", settings=names)
    return dataclasses.replace(spec, command_line=line, elevation="admin",
                               environment=[*spec.environment, {"name": "OPENBATCH_CONTAINER_NAME", "value": name}])
