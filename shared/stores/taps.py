"""Taps: temporary queues that get a copy of every change event while an operator watches.

``graphhooks events tail`` creates a queue ``tap-<random>`` and registers it here with an
expiry it renews every 30 s; the event outlet copies each batch to the taps alive at the
time, so the watcher never takes events from the real consumers of graph-changes. The
list is cached for a few seconds (a page of events does not cost a table read), and a
copy is best effort: a tap that vanished or fails never fails a page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.clock import utcnow
from shared.stores.tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient

PARTITION = "tap"
TAP_PREFIX = "tap-"
# A watcher renews its row every HEARTBEAT; one that died stops getting copies after TAP_LIFETIME.
HEARTBEAT = timedelta(seconds=30)
TAP_LIFETIME = timedelta(minutes=2)
CACHE_SECONDS = 5.0
COPY_CONCURRENCY = 16
# A copy waits at most an hour for a watcher that paused; a tap queue is never a consumer's.
COPY_TTL_SECONDS = 3600

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tap:
    """One registered tap queue and when it lapses unless renewed."""

    queue: str
    expires_at: datetime


class TapStore:
    """The ``taps`` table: one row per tap queue."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def register(self, queue: str, now: datetime) -> Tap:
        """Add or renew the tap ``queue`` until ``now`` + TAP_LIFETIME."""
        from azure.data.tables import UpdateMode

        tap = Tap(queue, now + TAP_LIFETIME)
        entity = {"PartitionKey": PARTITION, "RowKey": queue, "ExpiresAt": tap.expires_at}
        await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return tap

    async def remove(self, queue: str) -> None:
        """Forget a tap; a missing one is fine."""
        await self._client.delete_entity(PARTITION, queue)

    async def list(self) -> list[Tap]:
        """Every registered tap, lapsed ones included; none when the table was never created."""
        from azure.core.exceptions import ResourceNotFoundError

        query = self._client.query_entities(f"PartitionKey eq {quote_filter(PARTITION)}")
        try:
            return [Tap(str(e["RowKey"]), e["ExpiresAt"]) async for e in query]
        except ResourceNotFoundError:
            return []


def alive(taps: Sequence[Tap], now: datetime) -> list[str]:
    """The queues of the taps that have not lapsed."""
    return sorted(t.queue for t in taps if t.expires_at > now and t.queue.startswith(TAP_PREFIX))


class TapFeed:
    """Copies event batches to the live taps (the outlet's extra destination)."""

    def __init__(
        self,
        store: TapStore,
        client_for: Callable[[str], QueueClient],
        clock: Callable[[], datetime] = utcnow,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._client_for = client_for
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._queues: list[str] = []
        self._loaded_at: float | None = None
        self._clients: dict[str, QueueClient] = {}
        self._lock = asyncio.Lock()

    async def send_all(self, texts: Sequence[str]) -> None:
        """Copy ``texts`` to every live tap; never raises (a watcher is not a consumer)."""
        if not texts:
            return
        try:
            queues = await self._live()
        except Exception as exc:  # noqa: BLE001 - taps are best effort: the page must not fail for them
            log.warning("taps not read: %s", type(exc).__name__)
            return
        if queues:
            await asyncio.gather(*(self._copy(queue, texts) for queue in queues))

    async def close(self) -> None:
        """Close the tap queues' clients."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def _live(self) -> list[str]:
        async with self._lock:
            now = self._monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self._cache_seconds:
                self._queues = alive(await self._store.list(), self._clock())
                self._loaded_at = now
                for gone in set(self._clients) - set(self._queues):
                    await self._clients.pop(gone).close()
            return self._queues

    async def _copy(self, queue: str, texts: Sequence[str]) -> None:
        from azure.core.exceptions import AzureError

        client = self._clients.get(queue)
        if client is None:
            client = self._clients[queue] = self._client_for(queue)
        gate = asyncio.Semaphore(COPY_CONCURRENCY)

        async def one(text: str) -> None:
            async with gate:
                # Never created here: a tap queue that is gone was closed by its watcher.
                await client.send_message(text, time_to_live=COPY_TTL_SECONDS)

        try:
            await asyncio.gather(*(one(text) for text in texts))
        except AzureError as exc:
            log.info("tap %s not written: %s", queue, type(exc).__name__)
            self._loaded_at = None  # read the table again next time: its watcher may have gone
