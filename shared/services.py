"""Builds the adapters from the settings, once per process and event loop.

The import stays cheap: SDKs load on first use, so a cold start can answer
Graph's handshake before any of them is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .ingest import Ingest, SecretBook
from .settings import NOTIFICATIONS_QUEUE, Settings, storage_connection

if TYPE_CHECKING:
    from .processor import Processor
    from .renewer import Renewer
    from .sweeper import Sweeper

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> Any: ...


C = TypeVar("C", bound=_Closable)

SUBSCRIPTIONS_TABLE = "subscriptions"
CURSORS_TABLE = "deltacursors"
ITEMS_TABLE = "deltaitems"
# The HTTP path must answer within Graph's 3 s: one quick retry, no long back-off.
_FAST = {"retry_total": 1, "initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}
_FAST_TABLE = {"retry_total": 1, "retry_backoff_factor": 0}
_PATIENT = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
_PATIENT_TABLE = {"retry_total": 3, "retry_backoff_factor": 0.5}


class Lazy(Generic[T]):
    """A value built on first use and rebuilt when the event loop changes.

    Async SDK clients are bound to the loop they were created on.
    """

    def __init__(self, factory: Callable[[], Awaitable[T]]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> T:
        """The value, building it if this loop has none yet."""
        loop = asyncio.get_running_loop()
        if self._value is not None and self._loop is loop:
            return self._value
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._value = asyncio.Lock(), loop, None
        async with self._lock:
            if self._value is None:
                self._value = await self._factory()
        return self._value


class _Owned:
    """Clients built for a process, closed together (the host never needs to; tests do)."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    def own(self, client: C) -> C:
        """Register ``client`` for closing and hand it back."""
        self._stack.push_async_callback(client.close)
        return client

    async def close(self) -> None:
        """Close every registered client."""
        await self._stack.aclose()


@dataclass(frozen=True)
class Receivers:
    """The two HTTP endpoints' ingest objects."""

    notifications: Ingest
    lifecycle: Ingest
    resources: _Owned
    secrets: SecretBook

    async def close(self) -> None:
        """Let the secrets reads in flight finish, then close the storage clients."""
        await self.secrets.settle()
        await self.resources.close()


async def build_ingest(environ: Mapping[str, str]) -> Receivers:
    """The HTTP path needs only the storage connection, not the Graph settings."""
    from .queues import MessageQueue
    from .storage import queue_client, table_client
    from .stores.subscriptions import SubscriptionStore

    connection = storage_connection(environ)
    owned = _Owned()
    queue = MessageQueue(owned.own(queue_client(connection, NOTIFICATIONS_QUEUE, **_FAST)))
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, **_FAST_TABLE)))
    # The whole table, cached and reloaded in the background; one row for an id the cache lacks.
    secrets = SecretBook(store.secrets, store.secret)
    return Receivers(Ingest(secrets, queue), Ingest(secrets, queue), owned, secrets)


@dataclass(frozen=True)
class Worker:
    """What the queue and timer triggers use."""

    settings: Settings
    processor: Processor
    renewer: Renewer
    resources: _Owned
    sweeper: Sweeper

    async def close(self) -> None:
        """Close the storage clients and the Graph credential."""
        await self.resources.close()


async def build_worker(environ: Mapping[str, str]) -> Worker:
    """Read the settings and build the Graph, table and queue adapters."""
    from .graph import GraphGateway, build_client
    from .processor import Processor
    from .queues import MessageQueue
    from .renewer import Endpoints, Renewer
    from .sources.contract import SourceRegistry
    from .sources.drives import DriveSource
    from .storage import queue_client, table_client
    from .stores.cursors import CursorStore
    from .stores.items import ItemIndex
    from .stores.subscriptions import SubscriptionStore
    from .sweeper import Sweeper
    from .synchronizer import Synchronizer

    settings = Settings.from_env(environ)
    connection = settings.storage_connection
    owned = _Owned()
    client, credential = build_client(settings)
    owned.own(credential)
    graph = GraphGateway(client)
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, **_PATIENT_TABLE)))
    cursors = CursorStore(owned.own(table_client(connection, CURSORS_TABLE, **_PATIENT_TABLE)))
    index = ItemIndex(owned.own(table_client(connection, ITEMS_TABLE, **_PATIENT_TABLE)))
    for table in (store, cursors, index):
        await table.setup()
    notifications = MessageQueue(owned.own(queue_client(connection, settings.notifications_queue, **_PATIENT)))
    changes = MessageQueue(owned.own(queue_client(connection, settings.changes_queue, **_PATIENT)))
    poison = MessageQueue(owned.own(queue_client(connection, f"{settings.notifications_queue}-poison", **_PATIENT)))
    synchronizer = Synchronizer(cursors, index, SourceRegistry([DriveSource(graph)]), changes, notifications)
    renewer = Renewer(
        graph,
        store,
        synchronizer,
        notifications,
        Endpoints(settings.notification_url, settings.lifecycle_notification_url),
        full_initial_sync=settings.initial_sync == "full",
    )
    processor = Processor(store, synchronizer, renewer, notifications, poison)
    sweeper = Sweeper(store, cursors, notifications, settings.sweep_after)
    return Worker(settings, processor, renewer, owned, sweeper)
