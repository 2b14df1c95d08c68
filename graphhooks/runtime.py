"""What every command needs: the app's settings, storage clients, and one way to fail.

Settings are read like the function app reads them: ``local.settings.json``'s ``Values``
(in the current directory, or ``--settings PATH``) under the environment, which wins.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from shared.config.storage import storage_connection
from shared.errors import GraphWebhookError, OperatorRequestError
from shared.model.connection import StorageConnection

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


def read_values(path: Path | None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The file's ``Values`` (when it exists, or was named) overlaid with the environment."""
    values: dict[str, str] = {}
    candidate = path or Path(LOCAL_SETTINGS)
    if path is not None or candidate.is_file():
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
        """The storage connection, read as the app reads it."""
        return storage_connection(self.values)

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

        worker = await build_worker(self.values)
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

        return self._keep(table_client(self.connection, name, self._credential))

    def queue(self, name: str) -> QueueClient:
        """A queue client that base64-encodes text, like the app's."""
        from shared.stores.clients import queue_client

        return self._keep(queue_client(self.connection, name, self._credential))

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
            service = QueueServiceClient.from_connection_string(expand_connection(self.connection.connection_string))
        else:
            assert self.connection.queue_service_uri is not None  # storage_connection guarantees it
            service = QueueServiceClient(self.connection.queue_service_uri, credential=self._credential)
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


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a known failure is one line on stderr and exit code 1."""
    with failures():
        return asyncio.run(work)


@contextmanager
def failures() -> Iterator[None]:
    """Turn the app's and storage's errors into one clear line and exit code 1 (never a traceback)."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError

    try:
        yield
    except GraphWebhookError as exc:
        fail(str(exc))
    except ClientAuthenticationError as exc:
        fail(f"storage refused the credentials ({type(exc).__name__}): check AzureWebJobsStorage or `az login`")
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
