"""``openbatch quickstart``: the seed tutorial's whole workflow, against an embedded or a running server."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openbatch.cli.connection import ENV_BATCH_URL, ENV_DEBUG, Connection
from openbatch.common.instance import running_endpoints
from openbatch.quickstart.embedded import EmbeddedServer, EmbeddedServerError
from openbatch.quickstart.progress import QuickstartView, StepFailed, print_block
from openbatch.quickstart.workflow import Options, Outcome, Quickstart


def quickstart(
    batch_url: Annotated[str | None, typer.Option("--batch-url", envvar=ENV_BATCH_URL, help="Use this running "
                                                   "server (default: the one `openbatch serve` runs on the data "
                                                   "dir, else an embedded one).", show_default=False)] = None,
    blob_url: Annotated[str | None, typer.Option("--blob-url", help="Its blob endpoint incl. the account "
                                                 "(default: http://127.0.0.1:10000/ACCOUNT).", show_default=False)] = None,
    account: Annotated[str | None, typer.Option("--account", help="Account (default: devstoreaccount1).",
                                                show_default=False)] = None,
    key: Annotated[str | None, typer.Option("--key", help="Account key (default: the emulator key).",
                                            show_default=False)] = None,
    embedded: Annotated[bool, typer.Option("--embedded", help="Run an embedded server even when one is "
                                           "running on the data dir.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the containers, job and pool.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the tasks.")] = 120.0,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Nodes in the pool.")] = 3,
    num_words: Annotated[int, typer.Option("--num-words", min=1, help="Top N words per file.")] = 3,
    pool_id: Annotated[str, typer.Option("--pool-id")] = Options.pool_id,
    job_id: Annotated[str, typer.Option("--job-id")] = Options.job_id,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data dir of the embedded server "
                                                  "(default: a temporary one).", show_default=False)] = None,
) -> None:
    """Run Azure's Batch Python tutorial (top-N words) end to end in seconds.

    With no flags, it uses the server `openbatch serve` runs on the data dir ($OPENBATCH_DATA_DIR or
    ~/.openbatch), or else an embedded one on free ports with a temporary data dir. The workflow
    uses only the official SDKs (azure-batch, azure-storage-blob): containers, uploads, SAS URLs,
    a pool with an elevated start task, a job, one task per input file, outputs, cleanup.
    """
    started = time.monotonic()
    console = Console(highlight=False, soft_wrap=True)
    view = QuickstartView(console, started)
    options = Options(pool_id=pool_id, job_id=job_id, nodes=nodes, num_words=num_words, timeout=timeout, keep=keep)
    console.print("[bold]openbatch quickstart[/] - the Azure Batch Python tutorial: top words of 3 texts")
    server: EmbeddedServer | None = None
    code = 0
    try:
        if not batch_url and not embedded and data_dir is None and running_endpoints() is not None:
            conn = Connection.resolve(None, blob_url, account, key)  # the running server's endpoints
        elif batch_url and not embedded:
            conn = Connection.resolve(batch_url, blob_url, account, key)
        else:
            server = EmbeddedServer(data_dir).start()
            conn = Connection(server.batch_url, server.blob_url, server.account, server.key)
        view.info(f"  [dim]batch endpoint {conn.batch_url}   blob endpoint {conn.blob_url}[/]")
        outcome = Quickstart(conn, options, view).run()
        code = report(console, outcome)
        if keep and server is not None and data_dir is None:
            view.info("[dim]note: the embedded server's temporary data dir goes away now; to look at what was "
                      "kept, run with --data-dir DIR and then `openbatch serve --data-dir DIR`[/]")
    except StepFailed as exc:
        view.failure(exc)  # no-op when the failing step already printed it
        code = 1
    except EmbeddedServerError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        code = 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        code = 130
    except Exception as exc:  # a surprise: one line, like every other error, unless debugging
        if os.environ.get(ENV_DEBUG):
            raise
        console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))}")
        code = 1
    finally:
        if server is not None:
            server.stop()
    verdict = "[green]done[/]" if code == 0 else "[red]failed[/]"
    console.print(f"{verdict} in {time.monotonic() - started:.2f}s")
    raise typer.Exit(code)


def report(console: Console, outcome: Outcome) -> int:
    """Print each file's top words and each failed task's stderr; 0 if every task succeeded."""
    table = Table(title="Top words", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Output")
    table.add_column("Words")
    for name, counts in sorted(outcome.top_words.items()):
        table.add_row(escape(name), escape(", ".join(f"{word} ({count})" for word, count in counts)))
    if outcome.top_words:
        console.print(table)
    for task in outcome.tasks:
        if task.ok:
            continue
        why = task.failure or f"exit code {task.exit_code}"
        console.print(f"[bold red]task {escape(task.task_id)} ({escape(task.input_name)}) failed:[/] {escape(why)}")
        if task.stderr.strip():
            print_block(console, f"{task.task_id} stderr.txt", task.stderr)
    missing = len(outcome.tasks) - len(outcome.top_words)
    if outcome.ok and missing > 0:
        console.print(f"[bold red]error:[/] {missing} task(s) succeeded but uploaded no output")
        return 1
    return 0 if outcome.ok else 1
