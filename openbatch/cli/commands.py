"""Registers the client commands (quickstart, env, pool/job/task/node/file/blob) on the ``openbatch`` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from openbatch.cli.blobcmd import blob_app
    from openbatch.cli.envcmd import env
    from openbatch.cli.files import file_app
    from openbatch.cli.helptext import quiet_help
    from openbatch.cli.jobs import job_app, task_app
    from openbatch.cli.pools import node_app, pool_app
    from openbatch.cli.quickstart import quickstart
    from openbatch.cli.watch import job_watch  # registers `job watch` on job_app

    del job_watch

    app.command("quickstart")(quickstart)
    app.command("env")(env)
    app.add_typer(pool_app, name="pool")
    app.add_typer(node_app, name="node")
    app.add_typer(job_app, name="job")
    app.add_typer(task_app, name="task")
    app.add_typer(file_app, name="file")
    app.add_typer(blob_app, name="blob")
    quiet_help()
