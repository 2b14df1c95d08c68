"""The refusals table: each instance's refusal counts, and the sums /api/health shows.

One partition per 5-minute bucket (``YYYYMMDDHHMM``, UTC); in it one row per instance and
reason (``{instance}|{reason}``) holding that instance's total, replaced at each flush.
A flush writes one transaction per bucket it has news for: usually one request, and
none when nothing was refused. The worker's flusher deletes buckets older than two days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.clock import utcnow
from shared.refusals import LAST_DAY, Ledger, Row, Totals, bucket_key, bucket_of, ledger, summarize
from shared.stores.tables import ensure_table, quote_filter, submit_batch

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

log = logging.getLogger(__name__)
DEFAULT_FLUSH_SECONDS = 30.0
# Rows are kept twice as long as health reads them; older ones are deleted by the worker's flusher.
KEEP = timedelta(hours=48)
PRUNE_EVERY_SECONDS = 3600.0
# Rows deleted per prune at most, so a prune stays short; the next one takes the rest.
PRUNE_LIMIT = 1000


class RefusalTable:
    """The refusals table (created on the first write)."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ready = False

    async def write(self, instance: str, rows: list[Row]) -> None:
        """Replace this instance's totals in ``rows``; raise when storage fails."""
        from azure.core.exceptions import ResourceNotFoundError

        if not self._ready:
            await ensure_table(self._client)
            self._ready = True
        by_bucket: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for row in rows:
            entity = {
                "PartitionKey": row.bucket,
                "RowKey": f"{instance}|{row.reason.value}",
                "Instance": instance,
                "Reason": row.reason.value,
                "Count": row.count,
            }
            by_bucket.setdefault(row.bucket, []).append(("upsert", entity))
        try:
            for batch in by_bucket.values():  # a bucket holds one row per reason: well under 100 operations
                await submit_batch(self._client, batch)
        except ResourceNotFoundError:
            self._ready = False  # the table was deleted: created again at the next flush
            raise

    async def totals(self, now: datetime) -> Totals:
        """Every instance's refusals of the last hour and 24 hours, by reason (none before the first write)."""
        from azure.core.exceptions import ResourceNotFoundError

        since = bucket_key(bucket_of(now - LAST_DAY))
        rows: list[tuple[str, str, int]] = []
        try:
            query = self._client.query_entities(
                f"PartitionKey ge {quote_filter(since)}", select=["PartitionKey", "Reason", "Count"]
            )
            async for entity in query:
                rows.append((str(entity["PartitionKey"]), str(entity.get("Reason", "")), int(entity.get("Count", 0))))
        except ResourceNotFoundError:
            pass
        return summarize(rows, now)

    async def prune(self, now: datetime) -> int:
        """Delete rows of buckets older than KEEP (any instance's, at most PRUNE_LIMIT); return how many."""
        from azure.core.exceptions import ResourceNotFoundError

        before = bucket_key(bucket_of(now - KEEP))
        deleted = 0
        try:
            query = self._client.query_entities(
                f"PartitionKey lt {quote_filter(before)}", select=["PartitionKey", "RowKey"]
            )
            async for entity in query:
                with contextlib.suppress(ResourceNotFoundError):  # another instance pruned it first
                    await self._client.delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
                if deleted >= PRUNE_LIMIT:
                    break
        except ResourceNotFoundError:
            return deleted
        return deleted


class RefusalFlusher:
    """Writes a ledger to the table every ``interval`` seconds in the background, and once more on close.

    A failed flush is logged and its counts stay due, for the next flush. ``prune`` also
    deletes old rows about once an hour (one flusher per deployment is enough: the worker's).
    """

    def __init__(
        self,
        table: RefusalTable,
        interval: float = DEFAULT_FLUSH_SECONDS,
        counts: Ledger | None = None,
        clock: Callable[[], datetime] = utcnow,
        prune: bool = False,
    ) -> None:
        self._table = table
        self._interval = interval
        self._ledger = counts if counts is not None else ledger()
        self._clock = clock
        self._prune = prune
        self._pruned_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RefusalFlusher:
        """Start flushing in the background (needs a running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="refusals-flush")
        return self

    async def flush(self) -> bool:
        """Write what the table lacks now; False (logged, counts kept) when storage failed."""
        try:
            await self._ledger.flush(self._write, self._clock())
        except Exception as exc:  # noqa: BLE001 - retried at the next flush; the cause, never a message
            log.warning("refusal counts not flushed (%s): kept for the next flush", type(exc).__name__)
            return False
        return True

    async def totals(self) -> Totals:
        """The table's sums, with this instance's latest counts written first (unless a flush is under way)."""
        if not self._ledger.flushing:  # a probe never queues behind a background flush that storage holds up
            await self.flush()
        return await self._table.totals(self._clock())

    async def close(self) -> None:
        """Stop the background flushes, then flush what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _write(self, rows: list[Row]) -> None:
        await self._table.write(self._ledger.instance, rows)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            if self._prune and (self._pruned_at is None or loop.time() - self._pruned_at >= PRUNE_EVERY_SECONDS):
                self._pruned_at = loop.time()
                try:
                    await self._table.prune(self._clock())
                except Exception as exc:  # noqa: BLE001 - old rows wait for the next prune
                    log.warning("old refusal counts not pruned (%s)", type(exc).__name__)
