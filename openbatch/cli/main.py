"""The ``openbatch`` command line."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from openbatch import __version__
from openbatch.cli.commands import register
from openbatch.cli.connection import ENV_DEBUG
from openbatch.common import eventlog
from openbatch.common.instance import DataDirInUse, default_data_dir
from openbatch.config import (
    DEFAULT_BATCH_PORT,
    DEFAULT_BLOB_PORT,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    ConfigError,
    Settings,
    accounts_from,
    is_loopback,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Self-hosted Azure Batch and Blob Storage.",
                  context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_show_locals=False)  # locals may hold an account key

class NodeIsolation(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


# Slow and broken clients: the defaults are those of Azure's front ends (docs/getting-started.md).
HeaderTimeout = Annotated[float, typer.Option(
    "--header-timeout", envvar="OPENBATCH_HEADER_TIMEOUT", metavar="SECONDS",
    help="Close a connection whose request headers are not complete this long after they began.")]
BodyTimeout = Annotated[float, typer.Option(
    "--body-timeout", envvar="OPENBATCH_BODY_TIMEOUT", metavar="SECONDS",
    help="Abort a request whose body receives no bytes for this long (the request commits nothing).")]
KeepAliveTimeout = Annotated[float, typer.Option(
    "--keep-alive-timeout", envvar="OPENBATCH_KEEP_ALIVE_TIMEOUT", metavar="SECONDS",
    help="Close a keep-alive connection idle for this long.")]
MaxConnectionsPerClient = Annotated[int, typer.Option(
    "--max-connections-per-client", envvar="OPENBATCH_MAX_CONNECTIONS_PER_CLIENT", metavar="N",
    help="Connections one client address may hold (both endpoints together); more are answered "
         "503 ServerBusy. 0: no limit.")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"openbatch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar=ENV_DEBUG,
                                        help="Print the full traceback of an unexpected error.")] = False,
) -> None:
    """Self-hosted Azure Batch and Azure Blob Storage, wire-compatible with the official SDKs."""
    if debug:
        os.environ[ENV_DEBUG] = "1"
    else:  # the SDKs log tracebacks of their own (e.g. "Ran into a deserialization error"): --debug shows them
        logging.getLogger("azure").setLevel(logging.CRITICAL)


@app.command()
def serve(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where pools, jobs, tasks, blobs and nodes live (default: "
                     "$OPENBATCH_DATA_DIR or ~/.openbatch)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all of them).")] = "127.0.0.1",
    advertise_host: Annotated[str, typer.Option(
        "--advertise-host", envvar="OPENBATCH_ADVERTISE_HOST", metavar="HOST",
        help="Name or address that nodes and clients on other machines reach this server at: the host "
             "of the URLs the server hands out (auto-storage SAS URLs, AZ_BATCH_ACCOUNT_URL). Default: "
             "--host, or 127.0.0.1 when --host is 0.0.0.0.")] = "",
    blob_port: Annotated[int, typer.Option("--blob-port", help="Blob endpoint port.")] = DEFAULT_BLOB_PORT,
    batch_port: Annotated[int, typer.Option("--batch-port", help="Batch endpoint port.")] = DEFAULT_BATCH_PORT,
    arm_port: Annotated[int, typer.Option(
        "--arm-port", help="Serve the management plane (Azure Resource Manager for Microsoft.Batch: accounts, "
                           "applications, pools; bearer tokens) on this port. Default: not served. See "
                           "docs/management.md.")] = 0,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="NAME:KEY (base64), repeatable; also OPENBATCH_ACCOUNTS.")
    ] = None,
    header_timeout: HeaderTimeout = DEFAULT_HEADER_TIMEOUT,
    body_timeout: BodyTimeout = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: KeepAliveTimeout = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_connections_per_client: MaxConnectionsPerClient = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    compute: Annotated[str, typer.Option(
        "--compute", envvar="OPENBATCH_COMPUTE", metavar="PROVIDER",
        help="Where nodes run: local (this machine), dask://HOST:PORT (the workers of a running Dask "
             "scheduler) or dask-local:N (a Dask LocalCluster of N worker processes). See docs/compute.md.")] = "local",
    dask_node_root: Annotated[str, typer.Option(
        "--dask-node-root", envvar="OPENBATCH_DASK_NODE_ROOT", metavar="DIR",
        help="dask: where node directories live on each worker's host (default: dask-local under the data "
             "dir, otherwise under each worker's local directory).")] = "",
    node_isolation: Annotated[NodeIsolation, typer.Option(
        "--node-isolation", envvar="OPENBATCH_NODE_ISOLATION",
        help="local: each node in its own mount, UTS and PID namespaces over an overlay of / (needs root on "
             "Linux): auto (when possible), on (refuse to start otherwise), off. See docs/compute.md.")
    ] = NodeIsolation.auto,
    dask_clusters: Annotated[str, typer.Option(
        "--dask-clusters", envvar="OPENBATCH_DASK_CLUSTERS", metavar="FILE",
        help="dask: a JSON file naming more clusters (schedulers, or cluster managers such as SSHCluster) "
             "that pools choose with the metadata openbatch.cluster. See docs/compute.md.")] = "",
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, help="-v: every request (method, path, status, duration) and every "
        "engine event on its own line; -vv: debug output too. Default: engine events, bursts added up.")] = 0,
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar="OPENBATCH_LOG_FORMAT", help="text, or json (one object per line).")] = LogFormat.text,
    test_clock: Annotated[
        bool, typer.Option("--test-clock", help="For tests: let signed requests move the service's clock "
                           "forward (POST /openbatch/clock on the batch endpoint). Never in production.")
    ] = False,
    ui: Annotated[bool, typer.Option(
        "--ui/--no-ui", help="Serve the web dashboard at / of the batch endpoint (no login: it listens where "
                             "the batch endpoint listens).")] = True,
    ui_actions: Annotated[bool, typer.Option(
        "--ui-actions", help="Let the dashboard terminate/delete jobs, reactivate tasks, resize pools and "
                             "reboot nodes (read-only without it).")] = False,
    https: Annotated[bool, typer.Option(
        "--https", envvar="OPENBATCH_HTTPS", help="Serve both endpoints over HTTPS with a certificate made in the "
        "data dir (tls/) for 127.0.0.1, localhost and --host/--advertise-host; `openbatch env` prints how to "
        "trust it. See docs/identity.md.")] = False,
    cert: Annotated[Path | None, typer.Option(
        "--cert", metavar="PEM", help="Serve HTTPS with this certificate (chain) instead; needs --key.")] = None,
    key_file: Annotated[Path | None, typer.Option("--key", metavar="PEM", help="The private key of --cert.")] = None,
    oauth: Annotated[str, typer.Option(
        "--oauth", envvar="OPENBATCH_OAUTH", metavar="MODE", help="accept-any: accept bearer tokens openbatch did "
        "not sign (expiry, audience and issuer form still checked; roles not). Default: only openbatch's own "
        "tokens. See docs/identity.md.")] = "",
) -> None:
    """Run the Blob and Batch endpoints in the foreground until SIGINT/SIGTERM."""
    from openbatch.server import Runtime, run

    eventlog.configure(verbose, log_format.value)
    try:
        accounts = accounts_from(account, os.environ.get("OPENBATCH_ACCOUNTS"))
        if data_dir is None:
            data_dir = default_data_dir()
        settings = Settings(data_dir=data_dir, host=host, advertise_host=advertise_host, blob_port=blob_port,
                            batch_port=batch_port, arm_port=arm_port, accounts=accounts,
                            header_timeout=header_timeout, body_timeout=body_timeout,
                            keep_alive_timeout=keep_alive_timeout,
                            max_connections_per_client=max_connections_per_client, test_clock=test_clock,
                            https=https, cert_file=str(cert or ""), key_file=str(key_file or ""), oauth=oauth,
                            compute=compute, dask_node_root=dask_node_root, dask_clusters=dask_clusters,
                            ui=ui, ui_actions=ui_actions, node_isolation=node_isolation.value)
        if compute != "local":
            try:  # lazy: Dask loads only when asked for
                from openbatch.compute.dask_cluster import load_clusters, parse_target
            except ImportError as exc:
                raise ConfigError(f"--compute {compute} needs Dask distributed: pip install 'openbatch[dask]'") from exc
            for spec in (parse_target(compute), *load_clusters(dask_clusters).values()):
                _warn_unreachable_urls(settings, spec.address)
        elif dask_clusters:
            raise ConfigError("--dask-clusters needs a dask compute provider (--compute dask://HOST:PORT or dask-local:N)")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    def ready(runtime: Runtime) -> None:
        names = ", ".join(runtime.settings.accounts)
        typer.echo(f"blob  endpoint {settings.blob_url}/{{account}}  accounts: {names}")
        typer.echo(f"batch endpoint {settings.batch_url}  accounts: {names}")
        typer.echo(f"data dir {settings.data_dir}")
        if settings.ui:
            mode = "actions on" if settings.ui_actions else "read-only"
            typer.echo(f"dashboard {settings.batch_url}/  ({mode})")
        sys.stdout.flush()

    try:
        run(settings, ready)
    except (OSError, DataDirInUse, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _warn_unreachable_urls(settings: Settings, scheduler: str) -> None:
    """Workers on other machines cannot reach URLs on 127.0.0.1: say so when a remote scheduler is named."""
    url_host = urlsplit(settings.blob_url).hostname or ""
    scheduler_host = urlsplit(scheduler).hostname or ""
    if scheduler_host and not is_loopback(scheduler_host) and is_loopback(url_host):
        typer.echo(f"warning: nodes are told to reach this server at {url_host}, which workers on other "
                   f"machines than this one cannot reach; serve with --host ADDRESS, or --host 0.0.0.0 "
                   f"--advertise-host ADDRESS (docs/compute.md, Running on a cluster)", err=True)


register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
