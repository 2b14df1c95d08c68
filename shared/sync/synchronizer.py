"""Delta passes for one subscription, page by page, resumable, within a time budget.

Each page is committed in this order, and only here (``_commit``):
1. classify it against the item index;
2. store its events;
3. write its index rows;
4. save the source's own state the page returned (``Page.state``);
5. save the link reached in the cursor (an ETag-conditional write under the run's lease).
Sources never write: whatever position they keep travels in the page, so none can
be saved before the changes it covers. A crash or failure at any step repeats at
most one page, with the same event ids and change types; a run that spends its
time budget saves its place and hands on through a continuation message, so a
resource of any size finishes across invocations with bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.clock import utcnow
from shared.errors import CursorConflictError, GraphRequestError, ResyncRequiredError
from shared.logs import log_event
from shared.model.changes import ChangeSource, NotifiedChange, Page, SourceRegistry
from shared.model.cursor import CursorState, Mode, StoredCursor
from shared.model.events import Classified, Context, classify_page, deletions, fit_event, known_removals_only
from shared.model.notifications import Envelope
from shared.model.resources import cursor_key
from shared.model.subscription import SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.stores.cursors import CursorStore
from shared.stores.items import ItemIndex
from shared.stores.source_state import SourceStateStore
from shared.sync.coalescing import DEFAULT_MIN_INTERVAL, Action, Decision, decide, decide_notified
from shared.sync.fanout import EventFanout
from shared.sync.lease import LEASE, Lease

log = logging.getLogger(__name__)
IN_PLACE_WAIT = timedelta(seconds=1)
# Well under the host's functionTimeout (10 minutes): the rest is left for the last page and the hand-on.
RUN_BUDGET = timedelta(minutes=4)
# Whole-second Date samples wobble by up to a second; beyond that the clocks have moved.
CALIBRATION_SLACK = timedelta(seconds=1.5)
# Lease races (or resumed passes) one notification tries before it is deferred.
ATTEMPTS = 4
# A broken server could otherwise page forever.
MAX_PAGES = 1_000_000


@dataclass(frozen=True)
class SyncOutcome:
    """What happened to a notification: skipped, deferred (with a delay) or run."""

    decision: Decision
    events: int = 0


@dataclass(frozen=True)
class _RunResult:
    events: int
    handed_on: bool
    # A pass this run began started after the message was stored (it was read from the queue
    # first), so it covers the notification whatever the clocks say; a resumed one may not.
    began: bool = False


class Synchronizer:
    """Runs delta passes for subscriptions, coalescing notifications that are covered."""

    def __init__(
        self,
        cursors: CursorStore,
        index: ItemIndex,
        sources: SourceRegistry,
        changes: MessageQueue | EventFanout,
        continuations: MessageQueue,
        source_state: SourceStateStore,
        clock: Callable[[], datetime] = utcnow,
        min_interval: timedelta = DEFAULT_MIN_INTERVAL,
        budget: timedelta = RUN_BUDGET,
        lease: timedelta = LEASE,
        monotonic: Callable[[], float] = time.monotonic,
        tenant_id: str = "",
    ) -> None:
        # Every event names the tenant it happened in: its subscription's, or GRAPH_TENANT_ID in single mode.
        self._tenant_id = tenant_id
        self._cursors = cursors
        self._index = index
        self._sources = sources
        self._changes = changes
        self._continuations = continuations
        self._source_state = source_state
        self._clock = clock
        self._min_interval = min_interval
        self._budget = budget.total_seconds()
        self._lease = lease
        self._monotonic = monotonic
        self._offset: timedelta | None = None  # storage's clock minus this instance's
        self._precise = False

    def _now(self) -> datetime:
        """Storage's time, as this instance estimates it: leases and intervals compare with storage's times."""
        return self._clock() + (self._offset or timedelta(0))

    def _calibrate(self, before: datetime, after: datetime, storage: datetime | None, precise: bool) -> None:
        if storage is None:
            return
        if not precise:
            storage += timedelta(milliseconds=500)  # a Date header's whole second: its midpoint
        offset = storage - (before + (after - before) / 2)
        # A whole-second sample only replaces a precise one when the clocks have visibly jumped apart.
        if precise or not self._precise or self._offset is None or abs(offset - self._offset) > CALIBRATION_SLACK:
            self._offset, self._precise = offset, precise

    async def _load(self, key: str) -> StoredCursor:
        before = self._clock()
        cursor = await self._cursors.load(key)
        self._calibrate(before, self._clock(), cursor.read_at, precise=False)
        return cursor

    async def _acquire(self, cursor: StoredCursor) -> Lease:
        before = self._clock()
        lease = await Lease.acquire(self._cursors, cursor, self._now, self._lease)
        self._calibrate(before, self._clock(), lease.written_at, precise=True)
        return lease

    async def start(self, resource: str, full: bool, tenant: str = "") -> None:
        """Record where a new subscription's changes begin, unless a cursor exists.

        The first pass enumerates the resource: with ``full`` every item is
        reported as created; otherwise the pass only builds the item index and
        reports what changes after now, so later events can tell created from
        updated exactly, even for a file moved in with its original dates.
        """
        key = cursor_key(resource, tenant)
        if (await self._cursors.load(key)).exists:
            return
        self._sources.of(tenant).for_resource(resource)  # fail now, not at the first notification
        mode = Mode.FULL if full else Mode.BASELINE
        await self._cursors.start(key, CursorState(mode=mode, pass_id=_new_pass(), since=self._now()))

    async def forget(self, resource: str, tenant: str = "") -> None:
        """Drop a resource's cursor and item index once nothing subscribes to it."""
        key = cursor_key(resource, tenant)
        await self._cursors.delete(key)
        await self._index.forget(key)
        await self._source_state.forget(key)

    async def resync(self, resource: str, tenant: str = "") -> bool:
        """Turn the resource's cursor into a resync pass (a lifecycle ``missed``); False when a pass is under way.

        The resync enumerates the resource, reports what changed since the last
        completed pass and, from the rows it did not see, the deletions.
        """
        key = cursor_key(resource, tenant)
        for _ in range(3):
            cursor = await self._load(key)
            if not cursor.exists or cursor.state.in_progress:
                return False
            state = replace(
                cursor.state,
                mode=Mode.RESYNC,
                pass_id=_new_pass(),
                next_link=None,
                final_link=None,
                pass_started=None,
                since=cursor.state.synced_from,
                pages=0,
            )
            try:
                await self._cursors.write(cursor, state)
            except CursorConflictError:
                continue  # another instance moved it: look again
            return True
        return False

    async def sync(self, record: SubscriptionRecord, notified_at: datetime, deferrals: int = 0) -> SyncOutcome:
        """Bring a subscription's resource up to date for a notification stored at ``notified_at``.

        RUN means a pass that began after the notification was stored ran (it covers
        the change; it may hand on to a continuation); SKIP, that a completed pass
        covers it already. Anything else is DEFER, so the notification is kept: a
        lost lease race, or a resumed pass that may have started before it.
        """
        key = record.cursor_key
        waited = False
        events = 0
        decision = Decision(Action.DEFER, self._min_interval, "cursor contended")
        for _ in range(ATTEMPTS):
            cursor = await self._load(key)
            decision = decide(cursor.state, notified_at, self._now(), deferrals, self._min_interval)
            if decision.action is Action.DEFER and not waited and decision.delay <= IN_PLACE_WAIT:
                # A queue delay has whole-second granularity: a short wait is cheaper here.
                waited = True
                await asyncio.sleep(decision.delay.total_seconds())
                continue
            if decision.action is not Action.RUN:
                return SyncOutcome(decision, events)
            try:
                lease = await self._acquire(cursor)
            except CursorConflictError:
                continue  # another instance moved first: look at its result
            result = await self._run(record, lease)
            events += result.events
            if result.began:
                return SyncOutcome(decision, events)
            if result.handed_on:
                # A resumed pass goes on in its continuation, and may have started before this notification.
                return SyncOutcome(Decision(Action.DEFER, self._min_interval, "resumed pass handed on"), events)
            # A resumed pass completed, and may have started before this notification: look again.
        # No pass known to cover the notification ran: keep it, never ack it.
        return SyncOutcome(Decision(Action.DEFER, self._min_interval, "no covering pass yet"), events)

    async def apply_notified(
        self,
        record: SubscriptionRecord,
        notified: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
        deferrals: int = 0,
    ) -> SyncOutcome:
        """Commit changes that notifications told with their resource data, as a delta page would be.

        ``notified`` holds each notification with its resource (decrypted, or what a
        deletion names); the resource's source turns it into the change its delta would
        report. Each is classified against the item index and committed (events, then index rows)
        under the resource's lease, so a delta pass never classifies the same item at the
        same time: one change gets one event id whichever path sees it first, and a
        repeat is no news. The cursor's position does not move. DEFER while a run holds
        the lease: the notification is kept, and only it knows its change.
        """
        key = record.cursor_key
        source = self._sources.of(record.tenant).for_resource(record.resource)
        told = [c for n, data in notified if (c := source.notified(record.resource, n, data)) is not None]
        if len(told) < len(notified):
            log.warning(
                "subscription %s: %d notifications name no %s: ignored",
                record.subscription_id,
                len(notified) - len(told),
                source.kind,
            )
        if not told:
            return SyncOutcome(Decision(Action.RUN, reason="nothing told"))
        for _ in range(ATTEMPTS):
            cursor = await self._load(key)
            if not cursor.exists:
                # Every subscription's cursor is started before Graph is asked for it; a lease here would
                # create an empty one and skip that start. Nothing else runs on this resource.
                log.warning(
                    "subscription %s has no cursor: notified changes committed unleased", record.subscription_id
                )
                return SyncOutcome(Decision(Action.RUN), await self._commit_notified(record, source, told))
            decision = decide_notified(cursor.state, self._now(), deferrals, self._min_interval)
            if decision.action is not Action.RUN:
                return SyncOutcome(decision)
            try:
                lease = await self._acquire(cursor)
            except CursorConflictError:
                continue
            try:
                async with lease.kept_alive():
                    events = await self._commit_notified(record, source, told)
            finally:
                await lease.release()
            return SyncOutcome(decision, events)
        return SyncOutcome(Decision(Action.DEFER, self._min_interval, "cursor contended"))

    async def _commit_notified(
        self, record: SubscriptionRecord, source: ChangeSource, told: Sequence[NotifiedChange]
    ) -> int:
        key = record.cursor_key
        containers: dict[str, list[NotifiedChange]] = {}
        for change in told:
            containers.setdefault(change.container_id, []).append(change)
        events = 0
        for container_id, group in containers.items():
            changes = [c.change for c in group]
            known = await self._index.known(key, [c.item_id for c in changes])
            if source.traits.ignores_unknown_removals:
                changes = known_removals_only(changes, known)
            context = Context(
                tenant_id=record.tenant or self._tenant_id,
                mode=Mode.DELTA,
                kind=source.kind,
                container_id=container_id,
                subscription_id=record.subscription_id,
                resource=record.resource,
                observed_at=self._now(),
            )
            result = classify_page(changes, known, context)
            await self._store(key, result)
            events += len(result.events)
        return events

    async def _run(self, record: SubscriptionRecord, lease: Lease) -> _RunResult:
        try:
            async with lease.kept_alive():
                return await self._pages(record, lease)
        except BaseException:
            await lease.release()
            raise

    async def _pages(self, record: SubscriptionRecord, lease: Lease) -> _RunResult:
        source = self._sources.of(record.tenant).for_resource(record.resource)
        key = record.cursor_key
        state = self._begin(lease)
        began = not lease.state.in_progress or lease.state.pass_started is None
        deadline = self._monotonic() + self._budget
        events = 0
        while True:
            if lease.lost:
                raise CursorConflictError(f"lease on {key} was lost")
            if state.final_link is not None:
                done, count = await self._report_deletions(record, source.kind, lease, state, deadline)
                events += count
                if not done:
                    return await self._hand_on(record, lease, events)
                state = _completed(lease.state, state.final_link)
                await lease.save(state, release=True)
                self._log(record, state, events, completed=True)
                return _RunResult(events, handed_on=False, began=began)
            try:
                page = await source.page(record.resource, state.next_link, self._source_state.view(key))
            except ResyncRequiredError as stale:
                log.warning("delta cursor for subscription %s is stale (410): resyncing", record.subscription_id)
                state = replace(
                    state,
                    mode=Mode.RESYNC,
                    next_link=stale.location,
                    final_link=None,
                    pass_id=_new_pass(),
                    since=lease.state.synced_from or state.since or state.pass_started,
                    pages=0,
                )
                await lease.save(state)
                continue
            mode = state.mode or Mode.DELTA
            context = Context(
                tenant_id=record.tenant or self._tenant_id,
                mode=mode,
                kind=source.kind,
                container_id=page.container_id,
                subscription_id=record.subscription_id,
                resource=record.resource,
                observed_at=self._now(),
                pass_id=state.pass_id,
                since=state.since,
            )
            known = await self._index.known(key, [c.item_id for c in page.changes])
            changes = page.changes
            if source.traits.ignores_unknown_removals:
                # calendarView delta lists changed events outside its window as removed.
                changes = known_removals_only(changes, known)
                if len(changes) < len(page.changes):
                    log.info(
                        "subscription %s: %d removals of items never reported (outside the window) ignored",
                        record.subscription_id,
                        len(page.changes) - len(changes),
                    )
            result = classify_page(changes, known, context)
            if mode is Mode.BASELINE and source.traits.silent_baseline:
                result = Classified([], result.writes)  # no 'latest' token: the first round only indexes
            events += len(result.events)
            if state.pages >= MAX_PAGES:
                raise GraphRequestError(f"delta exceeded {MAX_PAGES} pages")
            state = replace(state, container_id=page.container_id, pages=state.pages + 1)
            if page.next_link is not None:
                state = replace(state, next_link=page.next_link)
            elif mode.enumerates:
                state = replace(state, next_link=None, final_link=page.delta_link)
            else:
                state = _completed(state, page.delta_link)
                await self._commit(key, result, page, lease, state, release=True)
                self._log(record, state, events, completed=True)
                return _RunResult(events, handed_on=False, began=began)
            await self._commit(key, result, page, lease, state)
            if self._monotonic() >= deadline:
                return await self._hand_on(record, lease, events)

    def _begin(self, lease: Lease) -> CursorState:
        """The pass to work on: the one in progress, or a new incremental pass from the last deltaLink."""
        state = lease.state
        started = lease.written_at or self._now()
        if state.in_progress:
            if state.pass_started is None:
                return replace(state, pass_started=started, since=state.since or started)
            return state
        if state.delta_link is None:
            # No position at all (its start was lost): enumerate, reporting changes since the last pass.
            return replace(state, mode=Mode.RESYNC, pass_id=_new_pass(), pass_started=started, since=state.synced_from)
        return replace(state, mode=Mode.DELTA, next_link=state.delta_link, pass_started=started, pages=0)

    async def _report_deletions(
        self, record: SubscriptionRecord, kind: str, lease: Lease, state: CursorState, deadline: float
    ) -> tuple[bool, int]:
        """Report the live rows the enumeration did not mark; False when the budget ran out first."""
        assert state.mode is not None
        key = record.cursor_key
        context = Context(
            tenant_id=record.tenant or self._tenant_id,
            mode=state.mode,
            kind=kind,
            container_id=state.container_id,
            subscription_id=record.subscription_id,
            resource=record.resource,
            observed_at=self._now(),
            pass_id=state.pass_id,
        )
        count = 0
        async for rows in self._index.unmarked(key, state.pass_id):
            result, purge = deletions(rows, context)
            if (
                state.mode is Mode.BASELINE
                and self._sources.of(record.tenant).for_resource(record.resource).traits.silent_baseline
            ):
                result = Classified([], result.writes)
            await self._store(key, result)
            await self._index.purge(key, purge)
            count += len(result.events)
            if lease.lost:
                raise CursorConflictError(f"lease on {key} was lost")
            if self._monotonic() >= deadline:
                return False, count
        return True, count

    async def _store(self, key: str, result: Classified) -> None:
        # Events first: a crash before the index write repeats them with the same ids.
        await self._changes.send_all(fit_event(event) for event in result.events)
        await self._index.apply(key, result.writes)

    async def _commit(
        self, key: str, result: Classified, page: Page, lease: Lease, state: CursorState, release: bool = False
    ) -> None:
        """Store a page's events and index rows, then the source's state, then the cursor: in that order only."""
        await self._store(key, result)
        await self._source_state.apply(key, page.state)
        await lease.save(state, release=release)

    async def _hand_on(self, record: SubscriptionRecord, lease: Lease, events: int) -> _RunResult:
        """Release the lease with the place saved, and queue a message that resumes the pass."""
        await lease.save(lease.state, release=True)
        item = {"subscriptionId": record.subscription_id, "changeType": "updated", "resource": record.resource}
        await self._continuations.send(Envelope("continue", self._now(), [item]).to_json())
        self._log(record, lease.state, events, completed=False)
        return _RunResult(events, handed_on=True)

    @staticmethod
    def _log(record: SubscriptionRecord, state: CursorState, events: int, completed: bool) -> None:
        log_event(
            log,
            "delta.run",
            subscription_id=record.subscription_id,
            events=events,
            pages=None if completed else state.pages,  # a completed cursor no longer counts them
            outcome="completed" if completed else "handed_on",
        )


def _completed(state: CursorState, delta_link: str | None) -> CursorState:
    """The cursor once a pass is over: its deltaLink, and its start as the last completed pass."""
    return CursorState(delta_link=delta_link, synced_from=state.pass_started, lease_until=state.lease_until)


def _new_pass() -> str:
    return uuid.uuid4().hex
