"""Where the CLI connects: endpoints and key from flags or ``OPENBATCH_*`` variables, and error reporting.

Every command that talks to a server is wrapped by :func:`command`, which adds the four connection
options (``--batch-url``, ``--blob-url``, ``--account``, ``--key``, each with its environment
variable) to the command's signature and turns Azure errors into one line on stderr and exit code 1.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openbatch.common.instance import running_endpoints
from openbatch.config import DEFAULT_BATCH_PORT, DEFAULT_BLOB_PORT, DEV_ACCOUNT, DEV_KEY

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from azure.storage.blob import BlobServiceClient

ENV_BATCH_URL = "OPENBATCH_BATCH_URL"
ENV_BLOB_URL = "OPENBATCH_BLOB_URL"
ENV_ACCOUNT = "OPENBATCH_ACCOUNT"
ENV_KEY = "OPENBATCH_KEY"
ENV_DEBUG = "OPENBATCH_DEBUG"  # set by --debug: unexpected errors print their traceback
PANEL = "Connection (default: the server running on $OPENBATCH_DATA_DIR or ~/.openbatch)"
DEFAULT_BATCH_URL = f"http://127.0.0.1:{DEFAULT_BATCH_PORT}"


def default_blob_url(account: str) -> str:
    return f"http://127.0.0.1:{DEFAULT_BLOB_PORT}/{account}"


@dataclass(frozen=True)
class Connection:
    """One server: the Batch endpoint, the Blob endpoint (path style, ending in the account) and a key."""

    batch_url: str
    blob_url: str
    account: str
    key: str

    @classmethod
    def resolve(cls, batch_url: str | None = None, blob_url: str | None = None,
                account: str | None = None, key: str | None = None) -> Connection:
        """Flags win; typer already filled unset flags from the environment; then the endpoints of the
        server running on the data dir ($OPENBATCH_DATA_DIR or ~/.openbatch); then the local defaults."""
        running = running_endpoints() if not (batch_url and blob_url) else None
        name = account or (running.account if running else DEV_ACCOUNT)
        if running is not None:
            batch_url = batch_url or running.batch_url
            blob_url = blob_url or f"{running.blob_url.rstrip('/')}/{name}"
        return cls(
            batch_url=(batch_url or DEFAULT_BATCH_URL).rstrip("/"),
            blob_url=(blob_url or default_blob_url(name)).rstrip("/"),
            account=name,
            key=key or DEV_KEY,
        )

    def validate(self) -> Connection:
        """Refuse what cannot work before any request: a key that is not base64, a URL without a scheme."""
        try:
            base64.b64decode(self.key, validate=True)
        except (binascii.Error, ValueError):
            raise CliError("the account key (--key / OPENBATCH_KEY) is not valid base64") from None
        for name, url in (("--batch-url", self.batch_url), ("--blob-url", self.blob_url)):
            if not url.startswith(("http://", "https://")):
                raise CliError(f"{name} must be an http:// or https:// URL, got {url!r}")
        return self

    @property
    def connection_string(self) -> str:
        scheme = self.blob_url.split(":", 1)[0]
        return (
            f"DefaultEndpointsProtocol={scheme};AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.blob_url};"
        )

    # A refused connection is not retried: the server is down, and the user should hear it now.
    def batch(self) -> BatchClient:
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        return BatchClient(self.batch_url, AzureNamedKeyCredential(self.account, self.key), retry_connect=0)

    def blob(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.blob_url, credential={"account_name": self.account, "account_key": self.key},
                                 retry_connect=0)


BatchUrlOption = Annotated[
    str | None, typer.Option("--batch-url", envvar=ENV_BATCH_URL, rich_help_panel=PANEL, show_default=False,
                             help=f"Batch endpoint (default: {DEFAULT_BATCH_URL}).")
]
BlobUrlOption = Annotated[
    str | None, typer.Option("--blob-url", envvar=ENV_BLOB_URL, rich_help_panel=PANEL, show_default=False,
                             help=f"Blob endpoint incl. the account (default: {default_blob_url(DEV_ACCOUNT)}).")
]
AccountOption = Annotated[
    str | None, typer.Option("--account", envvar=ENV_ACCOUNT, rich_help_panel=PANEL, show_default=False,
                             help=f"Account name (default: {DEV_ACCOUNT}).")
]
KeyOption = Annotated[
    str | None, typer.Option("--key", envvar=ENV_KEY, rich_help_panel=PANEL, show_default=False, show_envvar=True,
                             help="Account key (base64; default: the emulator key).")
]

_CONNECTION_PARAMS = {
    "batch_url": BatchUrlOption,
    "blob_url": BlobUrlOption,
    "account": AccountOption,
    "key": KeyOption,
}


class CliError(Exception):
    """A mistake the user can fix; printed as ``error: message`` with exit code 1."""


def describe_error(exc: BaseException) -> str:
    """``Code: message (HTTP status)`` for an Azure error from either SDK: one line, no request ids."""
    from azure.core.exceptions import AzureError, HttpResponseError

    if not isinstance(exc, HttpResponseError):
        prefix = f"{type(exc).__name__}: " if isinstance(exc, AzureError) else ""
        return prefix + _first_line(exc)
    error = getattr(exc, "error", None)  # Batch: the odata error (code, message.value)
    code = getattr(error, "code", None)
    storage_code = getattr(exc, "error_code", None)  # Blob: x-ms-error-code
    if storage_code:
        code = str(getattr(storage_code, "value", storage_code))
    message = _first_line_of(getattr(error, "message", None))
    if not code:
        code, message = _error_from_body(exc.response)
    headers = getattr(exc.response, "headers", None)
    if not code and headers is not None:
        code = headers.get("x-ms-error-code")
    message = message or _first_line_of(exc.message)
    message = message or exc.reason or "no details"
    status = f" (HTTP {exc.status_code})" if exc.status_code else ""
    detail = _auth_detail(exc)
    return f"{code or 'Error'}: {message}{status}" + (f"\n  {detail}" if detail else "")


def _auth_detail(exc: Any) -> str:
    """The server's AuthenticationErrorDetail: it tells a wrong account from a wrong key."""
    error = getattr(exc, "error", None)
    for item in getattr(error, "details", None) or []:  # Batch: odata.error values
        if getattr(item, "code", None) == "AuthenticationErrorDetail" and getattr(item, "message", None):
            return _first_line_of(item.message)
    info = getattr(exc, "additional_info", None)  # Blob: extra elements of the XML error
    if isinstance(info, dict):
        for key, value in info.items():
            if str(key).lower() == "authenticationerrordetail" and value:
                return _first_line_of(value)
    return ""


def _error_from_body(response: object) -> tuple[str | None, str]:
    """The Batch JSON error of a streamed response (file downloads), which the SDK leaves unread."""
    import json

    try:
        read = getattr(response, "read", None)
        body = read() if read is not None else b""
        data = json.loads(body) if body else None
    except Exception:  # not JSON, or the connection is gone: nothing to add
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    message = data.get("message")
    if isinstance(message, dict):
        message = message.get("value")
    return (str(data["code"]) if data.get("code") else None), _first_line_of(message)


def as_text(value: object) -> str:
    """An SDK enum member (a ``str``-mixin Enum, whose ``str()`` is ``Class.MEMBER``) or string as text."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _first_line_of(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Azure errors and connection failures become ``error: ...`` on stderr and exit code 1."""
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        yield
    except typer.Exit:  # a command's own exit code
        raise
    except HttpResponseError as exc:
        _fail(describe_error(exc))
    except AzureError as exc:  # ServiceRequestError, connection refused, timeouts ...
        _fail(describe_error(exc))
    except (CliError, ValueError, OSError) as exc:
        _fail(_first_line(exc))
    except Exception as exc:  # a bug here or an SDK surprise: still one line, unless debugging
        if os.environ.get(ENV_DEBUG):
            raise
        _fail(f"unexpected {type(exc).__name__}: {_first_line(exc)} (run with --debug for a traceback)")


def _first_line(exc: BaseException) -> str:
    return _first_line_of(getattr(exc, "message", None) or exc) or type(exc).__name__


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    sys.stderr.flush()
    raise typer.Exit(1)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func(conn: Connection, ...)`` the connection options and the error reporting.

    The wrapper's signature is ``func``'s without ``conn`` plus the four connection options, which
    is what Typer reads to build the command line.
    """
    original = inspect.signature(func, eval_str=True)
    params = [p for name, p in original.parameters.items() if name != "conn"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in _CONNECTION_PARAMS.items()
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in _CONNECTION_PARAMS}
        with reporting_errors():
            return func(Connection.resolve(**options).validate(), **kwargs)

    wrapper.__signature__ = original.replace(  # type: ignore[attr-defined]
        parameters=[*params, *extra], return_annotation=inspect.Signature.empty
    )
    wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *extra]}
    del wrapper.__wrapped__
    return wrapper
