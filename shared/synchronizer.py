"""One delta run for one subscription: lease the cursor, read, emit, then save.

The order is what makes it safe: events are written before the item index and
the cursor move on, so a crash at any point repeats work but loses nothing, and
repeated events carry the ids they had the first time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .clock import utcnow
from .coalescing import DEFAULT_MIN_INTERVAL, Action, CursorState, Decision, decide
from .cursors import CursorStore, StoredCursor
from .errors import CursorConflictError
from .events import MAX_EVENT_BYTES, classify, fit_event
from .items import ItemIndex
from .queues import MessageQueue
from .settings import resource_key
from .sources import SourceRegistry
from .subscriptions import SubscriptionRecord

log = logging.getLogger(__name__)
# Short, and extended while a run pages on: a crashed instance blocks its drive briefly.
LEASE = timedelta(seconds=60)
IN_PLACE_WAIT = timedelta(seconds=1)


@dataclass(frozen=True)
class SyncOutcome:
    """What happened to a notification: skipped, deferred (with a delay) or run."""

    decision: Decision
    events: int = 0


class Synchronizer:
    """Runs delta queries for subscriptions, coalescing notifications that are covered."""

    def __init__(
        self,
        cursors: CursorStore,
        index: ItemIndex,
        sources: SourceRegistry,
        changes: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
        min_interval: timedelta = DEFAULT_MIN_INTERVAL,
    ) -> None:
        self._cursors = cursors
        self._index = index
        self._sources = sources
        self._changes = changes
        self._clock = clock
        self._min_interval = min_interval

    async def start(self, resource: str, full: bool) -> None:
        """Record where a new subscription's changes begin, unless a cursor exists."""
        key = resource_key(resource)
        if (await self._cursors.load(key)).exists:
            return
        if full:
            await self._cursors.start(key, CursorState())
            return
        started = self._clock()
        link = await self._sources.for_resource(resource).latest(resource)
        # The cursor stands for 'now': items created earlier are not news when first seen.
        await self._cursors.start(key, CursorState(delta_link=link, synced_from=started))

    async def forget(self, resource: str) -> None:
        """Drop a resource's cursor and item index once nothing subscribes to it."""
        key = resource_key(resource)
        await self._cursors.delete(key)
        await self._index.forget(key)

    async def sync(self, record: SubscriptionRecord, received_at: datetime, deferrals: int = 0) -> SyncOutcome:
        """Bring a subscription's resource up to date for a notification received at ``received_at``."""
        key = resource_key(record.resource)
        waited = False
        for _ in range(4):
            cursor = await self._cursors.load(key)
            now = self._clock()
            decision = decide(cursor.state, received_at, now, deferrals, self._min_interval)
            if decision.action is Action.DEFER and not waited and decision.delay <= IN_PLACE_WAIT:
                # A queue delay has whole-second granularity: a short wait is cheaper here.
                waited = True
                await asyncio.sleep(decision.delay.total_seconds())
                continue
            if decision.action is not Action.RUN:
                return SyncOutcome(decision)
            try:
                leased = await self._cursors.write(cursor, replace(cursor.state, lease_until=now + LEASE))
            except CursorConflictError:
                continue  # another instance moved first: look at its result
            return SyncOutcome(decision, await self._run(record, leased, started=now))
        return SyncOutcome(Decision(Action.DEFER, self._min_interval, "cursor contended"))

    async def _run(self, record: SubscriptionRecord, cursor: StoredCursor, started: datetime) -> int:
        source = self._sources.for_resource(record.resource)
        held = cursor

        async def keep_alive() -> None:
            nonlocal held
            now = self._clock()
            lease_until = held.state.lease_until
            if lease_until is not None and lease_until - now < LEASE / 2:
                # Raises CursorConflictError if another run took the lease: this run must stop.
                held = await self._cursors.write(held, replace(held.state, lease_until=now + LEASE))

        try:
            delta = await source.read(record.resource, cursor.state.delta_link, keep_alive)
            ids = [change.item_id for change in delta.changes]
            known = await (
                self._index.all_versions(cursor.key) if delta.complete else self._index.versions(cursor.key, ids)
            )
            result = classify(
                delta.changes,
                known,
                complete=delta.complete,
                kind=source.kind,
                container_id=delta.container_id,
                subscription_id=record.subscription_id,
                resource=record.resource,
                observed_at=self._clock(),
                since=cursor.state.synced_from,
            )
            await keep_alive()
            await self._changes.send_all(fit_event(event, MAX_EVENT_BYTES) for event in result.events)
            await keep_alive()
            await self._index.apply(cursor.key, result.upserts, result.deletes)
        except BaseException:
            await self._release(held)
            raise
        done = CursorState(delta_link=delta.delta_link, synced_from=started, lease_until=None)
        try:
            await self._cursors.write(held, done)
        except CursorConflictError:
            # Our lease expired and another run took over; its cursor wins, our events stand.
            log.warning("cursor %s was taken over during a run; keeping the newer cursor", cursor.key)
        log.info(
            "delta run for %s: %d events%s",
            record.subscription_id,
            len(result.events),
            " (resync)" if delta.complete else "",
        )
        return len(result.events)

    async def _release(self, cursor: StoredCursor) -> None:
        try:
            await self._cursors.write(cursor, replace(cursor.state, lease_until=None))
        except Exception:  # noqa: BLE001 - best effort: the lease also expires on its own
            log.warning("could not release the lease on %s", cursor.key)
