"""``openbatch file ...``: the files of a task (its directory on the node) and of a node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from openbatch.cli.connection import Connection, command
from openbatch.cli.output import Column, OutputFormat, OutputOption, done, show_list

file_app = typer.Typer(no_args_is_help=True, help="Files of tasks and nodes (stdout.txt, stderr.txt, wd/...).")

FILE_COLUMNS: list[Column] = [
    ("Name", "name"), ("Directory", "isDirectory"), ("Size", "properties.contentLength"),
    ("Modified", "properties.lastModified"),
]

JobId = Annotated[str, typer.Argument(help="Job id.")]
TaskId = Annotated[str, typer.Argument(help="Task id.")]
PoolId = Annotated[str, typer.Argument(help="Pool id.")]
NodeId = Annotated[str, typer.Argument(help="Node id.")]
FilePath = Annotated[str, typer.Argument(help="Path relative to the task (or node) directory, e.g. wd/out.txt.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Include subdirectories.")]
Dest = Annotated[Path | None, typer.Option("--dest", "-d", help="Write to this file instead of stdout.")]


@file_app.command("list")
@command
def file_list(conn: Connection, job_id: JobId, task_id: TaskId, recursive: Recursive = False,
              output: OutputOption = OutputFormat.table) -> None:
    """List a task's files."""
    show_list(conn.batch().list_task_files(job_id, task_id, recursive=recursive), FILE_COLUMNS, output,
              title="Files")


@file_app.command("get")
@command
def file_get(conn: Connection, job_id: JobId, task_id: TaskId, path: FilePath, dest: Dest = None) -> None:
    """Print (or save) one of a task's files."""
    _save(conn.batch().download_task_file(job_id, task_id, path), dest)


@file_app.command("delete")
@command
def file_delete(conn: Connection, job_id: JobId, task_id: TaskId, path: FilePath, recursive: Recursive = False) -> None:
    """Delete one of a task's files (or a directory with --recursive)."""
    conn.batch().delete_task_file(job_id, task_id, path, recursive=recursive)
    done(f"deleted {path}")


@file_app.command("node-list")
@command
def node_file_list(conn: Connection, pool_id: PoolId, node_id: NodeId, recursive: Recursive = False,
                   output: OutputOption = OutputFormat.table) -> None:
    """List a node's files (shared/, startup/, workitems/ ...)."""
    show_list(conn.batch().list_node_files(pool_id, node_id, recursive=recursive), FILE_COLUMNS, output,
              title="Files")


@file_app.command("node-get")
@command
def node_file_get(conn: Connection, pool_id: PoolId, node_id: NodeId, path: FilePath, dest: Dest = None) -> None:
    """Print (or save) one of a node's files, e.g. startup/stderr.txt."""
    _save(conn.batch().download_node_file(pool_id, node_id, path), dest)


def _save(chunks: Any, dest: Path | None) -> None:
    if dest is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    size = 0
    with dest.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    done(f"saved {size} bytes to {dest}")
