"""``openbatch pool ...`` and ``openbatch node ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openbatch.cli import inputs
from openbatch.cli.connection import CliError, Connection, command
from openbatch.cli.output import Column, OutputFormat, OutputOption, done, show_list, show_one

pool_app = typer.Typer(no_args_is_help=True, help="Pools: sets of nodes that run tasks.")
node_app = typer.Typer(no_args_is_help=True, help="Compute nodes of a pool.")

POOL_COLUMNS: list[Column] = [
    ("ID", "id"), ("State", "state"), ("Allocation", "allocationState"),
    ("Nodes", "currentDedicatedNodes"), ("Target", "targetDedicatedNodes"),
    ("Slots/node", "taskSlotsPerNode"), ("VM size", "vmSize"),
]
NODE_COLUMNS: list[Column] = [
    ("ID", "id"), ("State", "state"), ("Scheduling", "schedulingState"),
    ("Running", "runningTasksCount"), ("Run total", "totalTasksRun"), ("Start task", "startTaskInfo.state"),
]
IMAGE_COLUMNS: list[Column] = [
    ("Node agent SKU", "nodeAgentSKUId"), ("Publisher", "imageReference.publisher"),
    ("Offer", "imageReference.offer"), ("SKU", "imageReference.sku"), ("OS", "osType"),
]

PoolId = Annotated[str, typer.Argument(help="Pool id.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait until the operation has finished.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]
Filter = Annotated[str | None, typer.Option("--filter", help="OData $filter, e.g. \"state eq 'active'\".")]


@pool_app.command("create")
@command
def pool_create(
    conn: Connection,
    pool_id: Annotated[str | None, typer.Argument(help="Pool id (or the id in --json).", show_default=False)] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Pool body in the REST shape (- = stdin).")] = None,
    vm_size: Annotated[str, typer.Option(help="VM size (informational on openbatch).")] = "STANDARD_D1_V2",
    nodes: Annotated[int, typer.Option("--nodes", help="Target dedicated nodes.")] = 1,
    low_priority: Annotated[int, typer.Option("--low-priority", help="Target Spot/low-priority nodes.")] = 0,
    slots: Annotated[int, typer.Option("--slots", help="Task slots per node.")] = 1,
    image: Annotated[str | None, typer.Option(help="PUBLISHER:OFFER:SKU[:VERSION]; default: first Linux image.")] = None,
    node_agent_sku: Annotated[str | None, typer.Option("--node-agent-sku", help="Node agent SKU id.")] = None,
    start_task: Annotated[str | None, typer.Option("--start-task", help="Start task command line.")] = None,
    start_task_admin: Annotated[bool, typer.Option("--start-task-admin", help="Run the start task elevated.")] = False,
    start_task_file: Annotated[
        list[str] | None, typer.Option("--start-task-file", help="Start task resource file: URL or PATH=URL.")
    ] = None,
    no_wait_start_task: Annotated[
        bool, typer.Option("--no-wait-for-start-task", help="Schedule tasks before the start task succeeds.")
    ] = False,
) -> None:
    """Create a pool from flags, or from a JSON body in the REST shape (--json FILE)."""
    from azure.batch import models

    client = conn.batch()
    if json_file is not None:
        body = inputs.load_json(json_file)
        if pool_id:
            body["id"] = pool_id
        pool = models.BatchPoolCreateOptions(body)
    else:
        if not pool_id:
            raise CliError("give a pool id (or --json FILE)")
        if not start_task and (start_task_file or start_task_admin):
            raise CliError("--start-task-file and --start-task-admin need --start-task")
        task = None
        if start_task:
            task = models.BatchStartTask(
                command_line=start_task, resource_files=inputs.resource_files(start_task_file),
                user_identity=inputs.admin_identity(start_task_admin), wait_for_success=not no_wait_start_task,
            )
        pool = models.BatchPoolCreateOptions(
            id=pool_id, vm_size=vm_size, virtual_machine_configuration=inputs.image_from_spec(client, image, node_agent_sku),
            target_dedicated_nodes=nodes, target_low_priority_nodes=low_priority, task_slots_per_node=slots,
            start_task=task,
        )
    client.create_pool(pool)
    done(f"created pool {pool.id}")


@pool_app.command("list")
@command
def pool_list(conn: Connection, filter: Filter = None, output: OutputOption = OutputFormat.table) -> None:
    """List pools."""
    show_list(conn.batch().list_pools(filter=filter), POOL_COLUMNS, output, title="Pools")


@pool_app.command("show")
@command
def pool_show(conn: Connection, pool_id: PoolId, output: OutputOption = OutputFormat.table) -> None:
    """Show one pool."""
    show_one(conn.batch().get_pool(pool_id), output)


@pool_app.command("delete")
@command
def pool_delete(conn: Connection, pool_id: PoolId, wait: Wait = False, timeout: Timeout = 300.0) -> None:
    """Delete a pool (its nodes and their running tasks go with it)."""
    poller = conn.batch().begin_delete_pool(pool_id, polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, f"pool {pool_id} to be deleted", timeout)
        done(f"deleted pool {pool_id}")
    else:
        done(f"deleting pool {pool_id}")


@pool_app.command("resize")
@command
def pool_resize(
    conn: Connection, pool_id: PoolId,
    nodes: Annotated[int, typer.Option("--nodes", help="New target dedicated nodes.")],
    low_priority: Annotated[int, typer.Option("--low-priority", help="New target Spot nodes.")] = 0,
    deallocation: Annotated[
        str | None, typer.Option("--deallocation", help="requeue, terminate, taskcompletion or retaineddata.")
    ] = None,
    wait: Wait = False, timeout: Timeout = 300.0,
) -> None:
    """Resize a pool to a new number of nodes."""
    from azure.batch import models

    options = models.BatchPoolResizeOptions(target_dedicated_nodes=nodes, target_low_priority_nodes=low_priority,
                                            node_deallocation_option=deallocation)
    poller = conn.batch().begin_resize_pool(pool_id, options, polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, f"pool {pool_id} to resize", timeout)
        done(f"resized pool {pool_id} to {nodes} node(s)")
    else:
        done(f"resizing pool {pool_id} to {nodes} node(s)")


@pool_app.command("images")
@command
def pool_images(conn: Connection, output: OutputOption = OutputFormat.table) -> None:
    """List the images (and node agent SKUs) the server can run."""
    show_list(conn.batch().list_supported_images(), IMAGE_COLUMNS, output, title="Images")


@node_app.command("list")
@command
def node_list(conn: Connection, pool_id: PoolId, filter: Filter = None,
              output: OutputOption = OutputFormat.table) -> None:
    """List the nodes of a pool."""
    show_list(conn.batch().list_nodes(pool_id, filter=filter), NODE_COLUMNS, output, title="Nodes")


NodeId = Annotated[str, typer.Argument(help="Node id.")]
REBOOT_KINDS = ("requeue", "terminate", "taskcompletion", "retaineddata")


@node_app.command("show")
@command
def node_show(conn: Connection, pool_id: PoolId, node_id: NodeId, output: OutputOption = OutputFormat.table) -> None:
    """Show one node."""
    show_one(conn.batch().get_node(pool_id, node_id), output)


@node_app.command("reboot")
@command
def node_reboot(
    conn: Connection, pool_id: PoolId, node_id: NodeId,
    kind: Annotated[str, typer.Option("--kind", help="What happens to its running tasks: requeue, terminate, "
                                      "taskcompletion or retaineddata.")] = "requeue",
    wait: Wait = False, timeout: Timeout = 300.0,
) -> None:
    """Reboot a node (its running tasks are requeued; the start task runs again)."""
    from azure.batch.models._models import BatchNodeRebootOptions

    if kind not in REBOOT_KINDS:
        raise CliError(f"--kind must be one of {', '.join(REBOOT_KINDS)}, got {kind!r}")
    # Always a body: azure-batch 15.1 fails to build a reboot request without one
    # ("No value for given attribute"), as it does for terminate.
    options = BatchNodeRebootOptions(node_reboot_kind=kind)
    poller = conn.batch().begin_reboot_node(pool_id, node_id, options, polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, f"node {node_id} to reboot", timeout)
    done(f"rebooting node {node_id}" if not wait else f"rebooted node {node_id}")


@node_app.command("delete")
@command
def node_delete(conn: Connection, pool_id: PoolId, node_ids: Annotated[list[str], typer.Argument(help="Node ids.")],
                wait: Wait = False, timeout: Timeout = 300.0) -> None:
    """Remove nodes from a pool (the pool's target shrinks accordingly)."""
    from azure.batch import models

    poller = conn.batch().begin_remove_nodes(pool_id, models.BatchNodeRemoveOptions(node_ids=node_ids),
                                             polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, "the nodes to be removed", timeout)
    done(f"removing {len(node_ids)} node(s) from pool {pool_id}")


@node_app.command("preempt")
@command
def node_preempt(conn: Connection, pool_id: PoolId, node_id: NodeId) -> None:
    """Preempt a Spot/low-priority node as Azure would: it goes preempted, its running tasks are
    requeued and run elsewhere, and it is restored later (openbatch's own request, not Azure's)."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    request = HttpRequest("POST", f"/openbatch/pools/{pool_id}/nodes/{node_id}/preempt?api-version=2024-07-01.20.0",
                          headers={"Content-Type": "application/json; odata=minimalmetadata"})
    try:
        response = conn.batch().send_request(request)
        response.raise_for_status()
    except HttpResponseError as exc:
        raise CliError(f"preempting node {node_id} failed: {exc.message}") from None
    done(f"preempted node {node_id}")
