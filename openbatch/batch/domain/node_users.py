"""Node user accounts and remote login: ``POST/PUT/DELETE /pools/{p}/nodes/{n}/users``,
``GET .../remoteloginsettings``.

The accounts are made where the node is, by the compute provider (``ctx.compute.node_user``,
``remote_login``): inside an isolated node, else prefixed host accounts (docs/compute.md). As on
Azure a node must be idle or running; ``expiryTime`` defaults to a day from now and has a
precision of a day on Linux; PUT replaces every updatable property (an omitted password or key is
removed). A provider that cannot do it answers 409 with its reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.batch.domain.nodes import get_node
from openbatch.batch.wire import models as m

_READY = ("idle", "running")
# useradd's rules for a portable name (Azure's own limit is 20 characters on Windows only).
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def _ready_node(ctx: BatchContext, account: str, pool_id: str, node_id: str, what: str) -> Doc:
    node = get_node(ctx, account, pool_id, node_id)
    if node.get("state") not in _READY:
        raise e.NodeNotReady(f"You can {what} a user account on a compute node only when it is idle or running; "
                             f"the node is {node.get('state')}.")
    return node


def _expiry(body: Doc) -> str:
    when = m.date_time(body, "expiryTime") or datetime.now(UTC) + timedelta(days=1)
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def _check_name(name: str) -> str:
    if not name or len(name) > 32 or name[0] in "-." or not set(name) <= _NAME_CHARS:
        raise m.invalid("name", name, "A Linux user name is 1-32 lowercase letters, digits, '_', '-' or '.'.")
    return name


async def add_user(ctx: BatchContext, account: str, pool_id: str, node_id: str, body: Doc) -> None:
    name = _check_name(m.string(body, "name", required=True) or "")
    user = {"isAdmin": bool(m.boolean(body, "isAdmin")), "password": m.string(body, "password") or "",
            "sshPublicKey": m.string(body, "sshPublicKey") or "", "expiry": _expiry(body)}
    _ready_node(ctx, account, pool_id, node_id, "add")
    await _call(ctx, pool_id, node_id, "add", name, user)


async def update_user(ctx: BatchContext, account: str, pool_id: str, node_id: str, name: str, body: Doc) -> None:
    user = {"password": m.string(body, "password") or "", "sshPublicKey": m.string(body, "sshPublicKey") or "",
            "expiry": _expiry(body)}
    _ready_node(ctx, account, pool_id, node_id, "update")
    await _call(ctx, pool_id, node_id, "update", name, user)


async def delete_user(ctx: BatchContext, account: str, pool_id: str, node_id: str, name: str) -> None:
    _ready_node(ctx, account, pool_id, node_id, "delete")
    await _call(ctx, pool_id, node_id, "delete", name, {})


async def _call(ctx: BatchContext, pool_id: str, node_id: str, mode: str, name: str, user: Doc) -> None:
    try:
        await ctx.compute.node_user(pool_id, node_id, mode, name, user)
    except FileExistsError:
        raise e.NodeUserExists("The specified node user already exists.") from None
    except KeyError:
        raise e.NodeUserNotFound("The specified node user does not exist.") from None
    except OSError as exc:
        raise e.OperationInvalidForCurrentState(f"The node user could not be changed: {exc}") from None


async def remote_login(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> tuple[str, int]:
    """(address, port) of the node's SSH server."""
    _ready_node(ctx, account, pool_id, node_id, "log in with")
    try:
        return await ctx.compute.remote_login(pool_id, node_id)
    except OSError as exc:
        raise e.OperationInvalidForCurrentState(f"Remote login to this node is not available: {exc}") from None
