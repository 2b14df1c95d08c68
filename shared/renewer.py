"""The renew timer's work: carry out reconciliation plans, and lifecycle repairs."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import telemetry
from .budget import WriteBudget
from .clock import utcnow
from .errors import SubscriptionConflictError, SubscriptionNotFoundError
from .graph import GraphGateway, RemoteSubscription
from .lifetimes import next_expiry
from .logs import log_event
from .notifications import Envelope
from .queues import MessageQueue
from .reconciliation import listing_due, plan
from .settings import DesiredSubscription, resource_key
from .stores.subscriptions import CREATING, FAILED, SubscriptionRecord, SubscriptionStore
from .synchronizer import Synchronizer

if TYPE_CHECKING:
    from .subscription_sets import SubscriptionSets

log = logging.getLogger(__name__)
# Writes in flight at once: enough to use Graph's whole budget of 500 per 20 s
# when each write takes a few hundred milliseconds.
CONCURRENCY = 32
# Graph's list budget is about 40 requests per 20 s per app and tenant; this app takes
# at most 30 of them, leaving room for an operator's own look-ups.
LIST_REQUESTS = 30
LIST_WINDOW_SECONDS = 20.0


@dataclass(frozen=True)
class Endpoints:
    """Where Graph sends notifications and lifecycle events."""

    notification_url: str
    lifecycle_url: str


@dataclass(frozen=True)
class Report:
    """How many subscriptions one reconciliation touched, and how many failed."""

    created: int = 0
    renewed: int = 0
    recreated: int = 0
    deleted: int = 0
    failed: int = 0
    listed: bool = False


class Renewer:
    """Creates, renews, re-creates and deletes subscriptions."""

    def __init__(
        self,
        graph: GraphGateway,
        store: SubscriptionStore,
        synchronizer: Synchronizer,
        notifications: MessageQueue,
        endpoints: Endpoints,
        full_initial_sync: bool = False,
        concurrency: int = CONCURRENCY,
        budget: WriteBudget | None = None,
        clock: Callable[[], datetime] = utcnow,
        list_budget: WriteBudget | None = None,
        sets: SubscriptionSets | None = None,
        encryption_for: Callable[[str, bool], tuple[str, str] | None] | None = None,
    ) -> None:
        # (resource, its desired entry asks for resource data) -> (base64 DER certificate, certificate id), or None.
        self._encryption_for = encryption_for or (lambda resource, asked: None)
        # The resource keys whose desired entries (expanded sets included) ask for resource data.
        self._rich: set[str] = set()
        self._graph = graph
        self._store = store
        self._sync = synchronizer
        self._notifications = notifications
        self._endpoints = endpoints
        self._full = full_initial_sync
        self._gate = asyncio.Semaphore(concurrency)
        self._budget = budget or WriteBudget()
        self._clock = clock
        # With the list's URL, pages are fetched one by one within the list budget.
        self._list_budget = list_budget or WriteBudget(LIST_REQUESTS, LIST_WINDOW_SECONDS)
        self._listed_at: datetime | None = None
        # Graph's list as read during the current reconciliation: 409s share it.
        self._listing: list[RemoteSubscription] | None = None
        self._listing_lock = asyncio.Lock()
        self._backfilled = False
        # Expands forEachMemberOf entries into one subscription per member of the group.
        self._sets = sets

    async def reconcile(
        self, desired: Sequence[DesiredSubscription], now: datetime | None = None, list_remote: bool | None = None
    ) -> Report:
        """Make Graph and the table match ``desired``; failures are counted and logged.

        Graph's list is read when ``list_remote`` says so, or by default when
        reconciliation.listing_due finds it cheap or an hour old.
        """
        now = now or self._clock()
        if self._sets is not None:
            # Before anything else: a set whose membership cannot be read stops this tick, deleting nothing.
            desired = await self._sets.expand(desired)
        # Expanded entries carry includeResourceData; a pattern in settings would not match their resources.
        self._rich = {resource_key(d.resource) for d in desired if d.include_resource_data}
        if not self._backfilled:
            # Once per process: records written before id rows existed get theirs.
            await self._store.backfill()
            self._backfilled = True
        records = await self._store.list()
        listing = listing_due(len(records), self._listed_at, self._clock()) if list_remote is None else list_remote
        remote = await self._list_remote() if listing else None
        if listing:
            self._listed_at = self._clock()
        self._listing = remote
        try:
            todo = plan(desired, records, remote, now, self._endpoints.notification_url)
            # Computed once, so removing N records costs O(N), not a table scan each.
            kept = {resource_key(d.resource) for d in desired}
            removals = await self._each(todo.delete_remote, self._delete_remote)
            deleted = await self._each(todo.delete, lambda r: self.remove(r, kept))
            created = await self._each(todo.create, lambda d: self.create(d, now))
            recreated = await self._each(todo.recreate, lambda r: self.recreate(r, now))
            renewed = await self._each(todo.renew, lambda r: self.renew(r, now))
        finally:
            self._listing = None
        results = (removals, deleted, created, recreated, renewed)
        report = Report(
            created=created[0],
            renewed=renewed[0],
            recreated=recreated[0],
            deleted=deleted[0],
            failed=sum(failed for _, failed in results),
            listed=listing,
        )
        log_event(
            log,
            "subscriptions.reconciled",
            created=report.created,
            renewed=report.renewed,
            recreated=report.recreated,
            deleted=report.deleted,
            failed=report.failed,
            listed=report.listed,
        )
        telemetry.count(telemetry.RENEWALS, renewed[0], outcome="ok")
        telemetry.count(telemetry.RENEWALS, renewed[1], outcome="failed")
        return report

    async def create(self, want: DesiredSubscription, now: datetime) -> SubscriptionRecord:
        """Create a subscription with a fresh clientState, after recording where changes start."""
        record = SubscriptionRecord(
            key=want.key,
            resource=want.resource,
            change_type=want.change_type,
            client_state="",
            status=CREATING,
            updated_at=now,
        )
        if want.include_resource_data:
            self._rich.add(resource_key(want.resource))
        return await self._establish(record, now)

    async def recreate(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Replace a subscription Graph lost; the cursor is kept, so the gap is resynced.

        The record keeps the old id and clientState until the new subscription is
        active, so notifications queued for the old one still resolve; if creation
        fails, the record is marked failed and the next tick tries again.
        """
        return await self._establish(record, now)

    async def renew(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Extend a subscription to its resource's maximum lifetime; re-create it on 404."""
        expiry = next_expiry(record.resource, now, self._encryption(record.resource) is not None)
        try:
            granted = await self._write(lambda: self._graph.renew_subscription(record.subscription_id, expiry))
        except SubscriptionNotFoundError:
            log.info("subscription %s is gone at Graph: re-creating it", record.subscription_id)
            return await self.recreate(record, now)
        renewed = record.activated(record.subscription_id, granted, now)
        await self._store.save(renewed)
        return renewed

    async def reauthorize(self, record: SubscriptionRecord, now: datetime) -> None:
        """Answer reauthorizationRequired; re-create the subscription if Graph lost it."""
        try:
            await self._write(lambda: self._graph.reauthorize_subscription(record.subscription_id))
        except SubscriptionNotFoundError:
            await self.recreate(record, now)

    async def remove(self, record: SubscriptionRecord, kept: Collection[str] | None = None) -> None:
        """Delete a subscription that is no longer desired, with its record and, unless kept, its cursor.

        ``kept`` holds the resource keys still desired; without it the table is read to find out.
        """
        if record.subscription_id:
            await self._write(lambda: self._graph.delete_subscription(record.subscription_id))
        await self._store.delete(record.key, record.subscription_id)
        if kept is None:
            kept = {resource_key(r.resource) for r in await self._store.list()}
        if resource_key(record.resource) not in kept:
            await self._sync.forget(record.resource)

    async def _establish(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        # Saved first, so a crash leaves a trace the next tick can finish; the old id stays in it.
        attempt = replace(record, status=CREATING, updated_at=self._clock())
        await self._store.save(attempt)
        try:
            await self._sync.start(record.resource, self._full)
            if record.subscription_id:
                # Graph allows one subscription per combination: the old one must go first.
                await self._delete_remote(record.subscription_id)
            client_state = secrets.token_urlsafe(32)
            expiry = next_expiry(record.resource, now, self._encryption(record.resource) is not None)
            try:
                remote = await self._write(lambda: self._post(record, client_state, expiry))
            except SubscriptionConflictError:
                await self._delete_conflicting(record)
                remote = await self._write(lambda: self._post(record, client_state, expiry))
        except Exception:
            await self._mark_failed(attempt)
            raise
        active = attempt.activated(remote.id, remote.expires_at or expiry, now, client_state)
        # The new id row is written with the record; the old one goes only once the record has moved on.
        await self._store.save(active)
        if record.subscription_id and record.subscription_id != remote.id:
            await self._store.retire(record.subscription_id)
        # Changes made while no subscription existed reach no notification: look now.
        await self._request_sync(active)
        log.info("created subscription %s for %s", remote.id, record.resource)
        return active

    async def _mark_failed(self, attempt: SubscriptionRecord) -> None:
        try:
            await self._store.save(replace(attempt, status=FAILED, updated_at=self._clock()))
        except Exception:  # noqa: BLE001 - best effort: a creating record also counts as dead after a while
            log.warning("could not mark subscription %s as failed", attempt.key)

    async def _post(self, record: SubscriptionRecord, client_state: str, expiry: datetime) -> Any:
        return await self._graph.create_subscription(
            record.resource,
            record.change_type,
            self._endpoints.notification_url,
            self._endpoints.lifecycle_url,
            client_state,
            expiry,
            encryption=self._encryption(record.resource),
        )

    def _encryption(self, resource: str) -> tuple[str, str] | None:
        """The certificate (base64 DER, id) to subscribe ``resource`` with, when it asks for resource data."""
        return self._encryption_for(resource, resource_key(resource) in self._rich)

    async def _delete_conflicting(self, record: SubscriptionRecord) -> None:
        key = DesiredSubscription(record.resource, record.change_type).key
        for sub in await self._remote_for_conflict():
            same = DesiredSubscription(sub.resource.strip("/"), sub.change_type).key == key
            if same and sub.notification_url == self._endpoints.notification_url:
                await self._delete_remote(sub.id)

    async def _remote_for_conflict(self) -> list[RemoteSubscription]:
        """Graph's list for resolving a 409: read at most once per reconciliation, not once per conflict."""
        async with self._listing_lock:
            if self._listing is None:
                self._listing = await self._list_remote()
            return self._listing

    async def _list_remote(self) -> list[RemoteSubscription]:
        """Every subscription this app has at Graph, page by page within the list budget."""
        return await self._graph.list_subscriptions(pace=self._list_budget.slot)

    async def _delete_remote(self, subscription_id: str) -> None:
        await self._write(lambda: self._graph.delete_subscription(subscription_id))

    async def _request_sync(self, record: SubscriptionRecord) -> None:
        item = {"subscriptionId": record.subscription_id, "changeType": "updated", "resource": record.resource}
        await self._notifications.send(Envelope("renew", self._clock(), [item]).to_json())

    async def _write(self, call: Callable[[], Awaitable[Any]]) -> Any:
        async with self._budget.slot():
            return await call()

    async def _each(self, items: Sequence[Any], action: Callable[[Any], Awaitable[Any]]) -> tuple[int, int]:
        async def guarded(item: Any) -> bool:
            async with self._gate:
                try:
                    await action(item)
                except Exception as exc:  # noqa: BLE001 - one failure must not stop the rest
                    log.error("subscription change failed: %s: %s", type(exc).__name__, exc)
                    return False
            return True

        outcomes = await asyncio.gather(*(guarded(item) for item in items))
        return sum(outcomes), len(outcomes) - sum(outcomes)
