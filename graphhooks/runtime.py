"""What every command needs: the app's settings, storage clients, and one way to fail.

Settings are read like the function app reads them: ``local.settings.json``'s ``Values``
(in the current directory, or ``--settings PATH``) under the environment, which wins.
With neither, the settings `make run` writes (``.run/local.settings.json``) are read while
that stack runs. Every storage call is bounded (two quick retries, short timeouts), and a
command that waits more than a second shows a spinner on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from shared.config.storage import STORAGE_SETTING, storage_connection
from shared.errors import (
    GraphWebhookError,
    InvalidSettingError,
    MissingSettingError,
    OperatorRequestError,
    SettingsError,
)
from shared.model.connection import StorageConnection

from . import localstack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient, QueueServiceClient

    from shared.app.worker import Worker

T = TypeVar("T")
LOCAL_SETTINGS = "local.settings.json"
console = Console()
errors = Console(stderr=True)
# An operator waits at a terminal: two quick retries and short timeouts (seconds), so a
# storage account that is down fails a command in seconds, not the SDKs' minute and a half.
QUEUE_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "initial_backoff": 0.5,
    "increment_base": 0.5,
    "random_jitter_range": 0,
    "connection_timeout": 5,
    "read_timeout": 20,
}
TABLE_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "connection_timeout": 5,
    "read_timeout": 20,
}
SPIN_AFTER_SECONDS = 1.0
NO_SETTINGS = (
    "no ./local.settings.json here and no `make run` stack running"
    " (it writes .run/local.settings.json for the CLI): run `make run` and use graphhooks from the repository,"
    " or copy local.settings.example.json to local.settings.json, or pass --settings PATH,"
    " or set {key} in the environment"
)


def quiet_sdk_logs() -> None:
    """Keep azure-identity's multi-line warnings off the terminal: the command says it in one line."""
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)


def settings_file(path: Path | None) -> Path | None:
    """The file to read: the one named, ./local.settings.json, or the running local stack's."""
    if path is not None:
        return path
    local = Path(LOCAL_SETTINGS)
    if local.is_file():
        return local
    if localstack.running(localstack.STACK_SETTINGS):
        return localstack.STACK_SETTINGS
    return None


def read_values(path: Path | None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The file's ``Values`` (see ``settings_file``) overlaid with the environment."""
    values: dict[str, str] = {}
    candidate = settings_file(path)
    if candidate is not None:
        try:
            raw = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise OperatorRequestError(f"cannot read {candidate}: {exc}") from exc
        found = raw.get("Values") if isinstance(raw, dict) else None
        if not isinstance(found, dict):
            raise OperatorRequestError(f'{candidate} has no "Values" object')
        values.update({str(k): str(v) for k, v in found.items() if v is not None})
    values.update(environ)
    return values


@dataclass
class Session:
    """One command's settings source (set by the top-level ``--settings`` option)."""

    settings_path: Path | None = None
    _values: dict[str, str] | None = None

    @property
    def values(self) -> dict[str, str]:
        """The settings, read on first use."""
        if self._values is None:
            self._values = read_values(self.settings_path)
        return self._values

    @property
    def connection(self) -> StorageConnection:
        """The storage connection, read as the app reads it, and checked before any client is built."""
        try:
            connection = storage_connection(self.values)
        except SettingsError as exc:
            raise self.explained(exc) from None
        check_connection(connection)
        return connection

    def explained(self, error: SettingsError) -> GraphWebhookError:
        """A missing setting, with what to do when no settings file was found at all."""
        if isinstance(error, MissingSettingError) and settings_file(self.settings_path) is None:
            return OperatorRequestError(f"{error}: {NO_SETTINGS.format(key=error.key)}")
        return error

    @asynccontextmanager
    async def storage(self) -> AsyncIterator[Storage]:
        """Storage clients for this account, closed on exit."""
        from shared.stores.clients import storage_credential

        connection = self.connection
        credential = storage_credential(connection)
        store = Storage(connection, credential)
        try:
            yield store
        finally:
            await store.close()
            if credential is not None:
                await credential.close()

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        """The app's worker (Graph, the reconciler, the synchronizer), built from the same settings."""
        from shared.app.worker import build_worker

        self.connection  # noqa: B018 - checked first: a malformed connection string is a setting error
        try:
            worker = await build_worker(self.values)
        except SettingsError as exc:
            raise self.explained(exc) from None
        try:
            yield worker
        finally:
            await worker.close()


class Storage:
    """Table and queue clients for one account, shared by a command and closed together."""

    def __init__(self, connection: StorageConnection, credential: AsyncTokenCredential | None) -> None:
        self.connection = connection
        self._credential = credential
        self._open: list[Any] = []
        self._service: QueueServiceClient | None = None

    def table(self, name: str) -> TableClient:
        """A table client (the app's own adapter builds it)."""
        from shared.stores.clients import table_client

        return self._keep(table_client(self.connection, name, self._credential, **TABLE_OPTIONS))

    def queue(self, name: str) -> QueueClient:
        """A queue client that base64-encodes text, like the app's."""
        from shared.stores.clients import queue_client

        return self._keep(queue_client(self.connection, name, self._credential, **QUEUE_OPTIONS))

    def raw_queue(self, name: str) -> QueueClient:
        """A queue client with no encoding: messages are moved exactly as stored."""
        return self._keep(self.queues().get_queue_client(name))

    def queues(self) -> QueueServiceClient:
        """The account's queue service (listing queues), built once."""
        from azure.storage.queue.aio import QueueServiceClient

        from shared.stores.clients import expand_connection

        if self._service is not None:
            return self._service
        if self.connection.connection_string is not None:
            service = QueueServiceClient.from_connection_string(
                expand_connection(self.connection.connection_string), **QUEUE_OPTIONS
            )
        else:
            assert self.connection.queue_service_uri is not None  # storage_connection guarantees it
            uri = self.connection.queue_service_uri
            service = QueueServiceClient(uri, credential=self._credential, **QUEUE_OPTIONS)
        self._service = self._keep(service)
        return service

    async def close(self) -> None:
        """Close every client handed out."""
        for client in reversed(self._open):
            await client.close()
        self._open.clear()
        self._service = None

    def _keep(self, client: T) -> T:
        self._open.append(client)
        return client


def session(ctx: typer.Context) -> Session:
    """The session the top-level callback stored."""
    found = ctx.find_object(Session)
    return found if found is not None else Session()


def check_connection(connection: StorageConnection) -> None:
    """Refuse what the storage SDKs would refuse with a ValueError, naming the setting (no I/O)."""
    from shared.stores.clients import expand_connection

    if connection.connection_string is not None:
        from azure.data.tables import TableServiceClient
        from azure.storage.queue import QueueServiceClient

        text = expand_connection(connection.connection_string)
        try:
            QueueServiceClient.from_connection_string(text).close()
            TableServiceClient.from_connection_string(text).close()
        except ValueError as exc:  # the SDKs' messages never repeat the string (it holds the key)
            raise InvalidSettingError(STORAGE_SETTING, f"not a storage connection string ({exc})") from None
        return
    for service, uri in (("queue", connection.queue_service_uri), ("table", connection.table_service_uri)):
        if uri is not None and not uri.lower().startswith("https://"):
            raise InvalidSettingError(
                f"{STORAGE_SETTING}__{service}ServiceUri",
                "an identity-based connection needs an https:// endpoint (tokens are only sent over HTTPS)",
            )


def run(work: Coroutine[Any, Any, T], doing: str | None = None) -> T:
    """Run a command's coroutine; a known failure is one line on stderr and exit code 1.

    ``doing`` is the spinner's text, shown on a terminal once the work takes more than a
    second; None for work that shows its own progress.
    """
    with failures():
        return asyncio.run(_spinning(work, doing) if doing else work)


async def _spinning(work: Coroutine[Any, Any, T], doing: str) -> T:
    status = errors.status(doing)
    later = asyncio.get_running_loop().call_later(SPIN_AFTER_SECONDS, status.start)
    try:
        return await work
    finally:
        later.cancel()
        status.stop()


@contextmanager
def failures() -> Iterator[None]:
    """Turn the app's and storage's errors into one clear line and exit code 1 (never a traceback)."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError

    try:
        yield
    except GraphWebhookError as exc:
        fail(str(exc))
    except ClientAuthenticationError as exc:
        fail(
            f"storage refused the credentials ({type(exc).__name__}): check {STORAGE_SETTING},"
            f" or `az login` for an identity-based connection: {_first_line(exc)}"
        )
    except ServiceRequestError as exc:
        fail(f"cannot reach storage (is {STORAGE_SETTING} right, and the account or Azurite up?): {_first_line(exc)}")
    except AzureError as exc:
        fail(f"storage request failed: {type(exc).__name__}: {_first_line(exc)}")


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with code 1."""
    from rich.markup import escape

    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
