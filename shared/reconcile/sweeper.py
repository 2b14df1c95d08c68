"""The safety sweep: a delta run for every subscription that has not had one for a while.

Graph drops notifications for a slow endpoint and sends drives no ``missed``
event, so the renew timer also looks at each subscription's delta cursor and
requests a sync for those whose last completed run is older than
SWEEP_AFTER_SECONDS. The request is the same queue message a renewal sends;
the processor's coalescing skips it if a run started meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.clock import utcnow
from shared.model.notifications import Envelope
from shared.model.subscription import SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.stores.cursors import CursorStore
from shared.stores.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)
# Cursor point reads in flight at once: 10,000 subscriptions read in a few seconds.
READ_CONCURRENCY = 64
# Subscriptions per queue message: the processor runs a message's subscriptions together.
PER_MESSAGE = 10


@dataclass(frozen=True)
class SweepReport:
    """What one sweep looked at and asked for."""

    checked: int = 0
    due: int = 0
    messages: int = 0


def due_for_sweep(
    records: Iterable[SubscriptionRecord],
    last_completed: Mapping[str, datetime | None],
    now: datetime,
    after: timedelta,
) -> list[SubscriptionRecord]:
    """The subscriptions whose resource's last completed delta run started ``after`` or longer ago.

    ``last_completed`` maps a resource key to the start of its last completed run (None:
    never, or unknown). A resource watched by several records is swept once; records
    with no Graph subscription id yet cannot be named in a sync request and are left out.
    """
    due: list[SubscriptionRecord] = []
    seen: set[str] = set()
    for record in records:
        key = record.cursor_key
        if not record.subscription_id or key in seen:
            continue
        seen.add(key)
        completed = last_completed.get(key)
        if completed is None or now - completed >= after:
            due.append(record)
    return due


def sweep_envelopes(due: Sequence[SubscriptionRecord], now: datetime, per_message: int = PER_MESSAGE) -> list[str]:
    """Queue messages requesting a sync of each due subscription, ``per_message`` to a message."""
    items = [{"subscriptionId": r.subscription_id, "changeType": "updated", "resource": r.resource} for r in due]
    return [
        Envelope("sweep", now, items[start : start + per_message]).to_json()
        for start in range(0, len(items), per_message)
    ]


class Sweeper:
    """Reads records and cursors, and enqueues sync requests for the subscriptions that are due."""

    def __init__(
        self,
        store: SubscriptionStore,
        cursors: CursorStore,
        notifications: MessageQueue,
        after: timedelta,
        clock: Callable[[], datetime] = utcnow,
        concurrency: int = READ_CONCURRENCY,
    ) -> None:
        self._store = store
        self._cursors = cursors
        self._notifications = notifications
        self._after = after
        self._clock = clock
        self._concurrency = concurrency

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """Request a delta run for every subscription whose last completed run is too old."""
        now = now or self._clock()
        records = [r for r in await self._store.list() if r.subscription_id]
        keys = sorted({r.cursor_key for r in records})
        completed = dict(zip(keys, await self._last_completed(keys), strict=True))
        due = due_for_sweep(records, completed, now, self._after)
        messages = sweep_envelopes(due, now)
        await self._notifications.send_all(messages)
        report = SweepReport(checked=len(keys), due=len(due), messages=len(messages))
        log.info("swept subscriptions: %s", report)
        return report

    async def _last_completed(self, keys: Sequence[str]) -> list[datetime | None]:
        gate = asyncio.Semaphore(self._concurrency)

        async def one(key: str) -> datetime | None:
            async with gate:
                cursor = await self._cursors.load(key)
            return cursor.state.synced_from

        return list(await asyncio.gather(*(one(key) for key in keys)))
