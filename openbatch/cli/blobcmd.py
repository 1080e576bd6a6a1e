"""``openbatch blob ...``: containers and blobs of the Blob endpoint, with progress bars for large files."""

from __future__ import annotations

import datetime
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openbatch.cli.connection import CliError, Connection, command
from openbatch.cli.output import Column, OutputFormat, OutputOption, console, done, show_list

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.storage.blob import ContainerClient

blob_app = typer.Typer(no_args_is_help=True, help="Blob containers and blobs (inputs, outputs, task programs).")

PROGRESS_THRESHOLD = 4 * 1024 * 1024  # files from this size up get a progress bar

CONTAINER_COLUMNS: list[Column] = [("Name", "name"), ("Last modified", "last_modified"), ("Public", "public_access")]
BLOB_COLUMNS: list[Column] = [("Name", "name"), ("Size", "size"), ("Last modified", "last_modified"),
                              ("Content type", "content_settings.content_type")]

Container = Annotated[str, typer.Argument(help="Container name.")]


def _doc(item: Any) -> Any:
    """A storage model as plain data (the SDK's models are dict-like, nested)."""
    if callable(getattr(item, "items", None)):  # dicts and the SDK's DictMixin models
        return {key: _doc(value) for key, value in item.items()}
    return item


@blob_app.command("ls")
@command
def blob_ls(
    conn: Connection,
    container: Annotated[str | None, typer.Argument(help="Container (none: list containers).")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only names starting with this.")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List containers, or the blobs of a container."""
    service = conn.blob()
    if container is None:
        items = (_doc(c) for c in service.list_containers(name_starts_with=prefix))
        show_list(items, CONTAINER_COLUMNS, output, title="Containers")
        return
    blobs = (_doc(b) for b in service.get_container_client(container).list_blobs(name_starts_with=prefix))
    show_list(blobs, BLOB_COLUMNS, output, title="Blobs")


@blob_app.command("create")
@command
def blob_create(conn: Connection, container: Container) -> None:
    """Create a container."""
    conn.blob().create_container(container)
    done(f"created container {container}")


@blob_app.command("upload")
@command
def blob_upload(
    conn: Connection,
    source: Annotated[Path, typer.Argument(help="A file, or a directory (uploaded recursively).")],
    container: Container,
    name: Annotated[str | None, typer.Option("--name", help="Blob name (a single file; default: its name).")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Prepended to every blob name.")] = "",
    create: Annotated[bool, typer.Option("--create", help="Create the container if it does not exist.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace existing blobs.")] = True,
) -> None:
    """Upload a file or a directory to a container."""
    files = _sources(source, name)
    client = conn.blob().get_container_client(container)
    if create and not client.exists():
        client.create_container()
    for path, blob_name in files:
        _upload_one(client, path, prefix + blob_name, overwrite)
    done(f"uploaded {len(files)} file(s) to {container}")


def _sources(source: Path, name: str | None) -> list[tuple[Path, str]]:
    if source.is_file():
        return [(source, name or source.name)]
    if not source.is_dir():
        raise CliError(f"{source}: no such file or directory")
    if name:
        raise CliError("--name is for a single file; use --prefix with a directory")
    return [(p, p.relative_to(source).as_posix()) for p in sorted(source.rglob("*")) if p.is_file()]


def _upload_one(client: ContainerClient, path: Path, blob_name: str, overwrite: bool) -> None:
    size = path.stat().st_size
    with path.open("rb") as data, _progress(f"↑ {blob_name}", size) as hook:
        client.upload_blob(blob_name, data, length=size, overwrite=overwrite, max_concurrency=4,
                           progress_hook=hook)


@blob_app.command("download")
@command
def blob_download(
    conn: Connection, container: Container,
    blob: Annotated[str, typer.Argument(help="Blob name.")],
    dest: Annotated[str | None, typer.Argument(
        help="File, or directory: an existing one or a path ending in / (made if missing); default ./NAME; "
             "- = stdout.", show_default=False)] = None,
) -> None:
    """Download a blob to a file (or stdout)."""
    client = conn.blob().get_blob_client(container, blob)
    if dest == "-":
        client.download_blob().readinto(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    name = blob.rsplit("/", 1)[-1]
    target = Path(dest) if dest else Path(name)
    if target.is_dir() or (dest or "").endswith("/"):  # Path() drops the trailing slash: look at the text
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    size = int(client.get_blob_properties().size)
    partial = target.with_name(target.name + ".part")
    with partial.open("wb") as out, _progress(f"↓ {blob}", size) as hook:
        client.download_blob(max_concurrency=4, progress_hook=hook).readinto(out)
    partial.replace(target)
    done(f"downloaded {blob} to {target} ({size} bytes)")


@blob_app.command("rm")
@command
def blob_rm(
    conn: Connection, container: Container,
    blobs: Annotated[list[str] | None, typer.Argument(help="Blob names.")] = None,
    whole: Annotated[bool, typer.Option("--container", help="Delete the container itself, with all its blobs.")] = False,
) -> None:
    """Delete blobs, or a whole container with --container."""
    service = conn.blob()
    if whole:
        if blobs:
            raise CliError("give either blob names or --container, not both")
        service.delete_container(container)
        done(f"deleted container {container}")
        return
    if not blobs:
        raise CliError("give the blob names to delete (or --container to delete the container)")
    client = service.get_container_client(container)
    for name in blobs:
        client.delete_blob(name)
    done(f"deleted {len(blobs)} blob(s) from {container}")


@blob_app.command("sas")
@command
def blob_sas(
    conn: Connection, container: Container,
    blob: Annotated[str | None, typer.Argument(help="Blob name (none: a container SAS).")] = None,
    permission: Annotated[str, typer.Option("--permission", "-p", help="Letters of racwdl.")] = "r",
    hours: Annotated[float, typer.Option("--hours", help="Valid for this many hours.")] = 24.0,
) -> None:
    """Print a SAS URL (e.g. for a task's resource file or output files)."""
    from azure.storage.blob import generate_blob_sas, generate_container_sas

    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    if blob is None:
        token = generate_container_sas(conn.account, container, account_key=conn.key, permission=permission,
                                       expiry=expiry)
        url = f"{conn.blob_url}/{container}"
    else:
        token = generate_blob_sas(conn.account, container, blob, account_key=conn.key, permission=permission,
                                  expiry=expiry)
        url = conn.blob().get_blob_client(container, blob).url
    sys.stdout.write(f"{url}?{token}\n")


@blob_app.command("versioning")
@command
def blob_versioning(
    conn: Connection,
    state: Annotated[str | None, typer.Argument(help="on or off (none: show it).")] = None,
) -> None:
    """Show or switch blob versioning of the account (every write then keeps the previous version).

    Azure sets it in the management plane (isVersioningEnabled); openbatch keeps it in the Blob
    service properties as <IsVersioningEnabled>, which the data-plane SDKs cannot send: this
    command sends the properties document itself, signed by the SDK's pipeline."""
    from azure.core.rest import HttpRequest  # lazy, as every SDK import of the CLI: start-up time

    if state not in (None, "on", "off"):
        raise CliError("say on or off")
    client = conn.blob()._client  # the SDK's generated client: it signs a request we build
    url = f"{conn.blob_url}/?restype=service&comp=properties"
    current = client._send_request(HttpRequest("GET", url)).text()
    if state is None:
        sys.stdout.write(f"versioning {'on' if '<IsVersioningEnabled>true' in current else 'off'}\n")
        return
    element = f"<IsVersioningEnabled>{'true' if state == 'on' else 'false'}</IsVersioningEnabled>"
    body = re.sub(r"<IsVersioningEnabled>[^<]*</IsVersioningEnabled>", "", current)
    body = body.replace("</StorageServiceProperties>", element + "</StorageServiceProperties>")
    answer = client._send_request(HttpRequest("PUT", url, content=body.encode(),
                                              headers={"Content-Type": "application/xml"}))
    if answer.status_code != 202:
        raise CliError(f"the server answered {answer.status_code}: {answer.text()[:200]}")
    done(f"versioning {state}")


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int, int | None], None] | None]:
    """A transfer progress bar for large files on a terminal; nothing otherwise."""
    out = console()
    if total < PROGRESS_THRESHOLD or not out.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task(label, total=total)

        def hook(current: int, _total: int | None) -> None:
            progress.update(task, completed=current)

        yield hook
