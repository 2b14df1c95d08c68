"""The renew timer's work: carry out reconciliation plans, and lifecycle repairs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.clock import utcnow
from shared.errors import GraphRequestError, SubscriptionNotFoundError
from shared.logs import log_event
from shared.model.lifetimes import next_expiry
from shared.model.notifications import Envelope
from shared.model.resources import DesiredSubscription, resource_key
from shared.model.subscription import CREATING, FAILED, RemoteSubscription, SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.reconcile.budget import WriteBudget
from shared.reconcile.creation import create_recorded, encrypted_for, thumbprint
from shared.reconcile.gateway import SubscriptionGateway
from shared.reconcile.plan import listing_due, plan, sort_pending
from shared.stores.subscriptions import SubscriptionStore
from shared.sync.synchronizer import Synchronizer

if TYPE_CHECKING:
    from shared.reconcile.subscription_sets import SubscriptionSets
    from shared.stores.pending import PendingCreation

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

    @property
    def urls(self) -> tuple[str, str]:
        """The notification and lifecycle URLs of a webhook subscription."""
        return (self.notification_url, self.lifecycle_url)


@dataclass(frozen=True)
class Report:
    """How many subscriptions one reconciliation touched, and how many failed."""

    created: int = 0
    renewed: int = 0
    recreated: int = 0
    deleted: int = 0
    failed: int = 0
    listed: bool = False


class Reconciler:
    """Creates, renews, re-creates and deletes subscriptions."""

    def __init__(
        self,
        graph: SubscriptionGateway,
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
        service: str = "graph",
        tenant: str = "",
    ) -> None:
        # The tenant whose subscriptions these are, in a multi-tenant deployment ('' in a single-tenant one).
        self._tenant = tenant
        # Whose subscriptions these are (graph, sharepoint): named in the tick's log line.
        self._service = service
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
        # Records seen by the last tick: whether this one lists Graph is decided before reading them.
        self._records_seen = 0
        self._backfilled = False
        # Expands forEachMemberOf entries into one subscription per member of the group.
        self._sets = sets

    async def records(self) -> list[SubscriptionRecord]:
        """The stored records this reconciler owns (its tenant's, in a multi-tenant deployment)."""
        return await self._store.list()

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
        due = listing_due(self._records_seen, self._listed_at, self._clock())
        listing = due if list_remote is None else list_remote
        remote = await self._list_remote() if listing else None
        if listing:
            self._listed_at = self._clock()
        # Read after Graph's list, pending rows before records: a creation under way then shows as a
        # creating record (saved before its row, and its row before its POST), never as a stray to delete.
        rows = await self._store.pending.all()
        records = await self._store.list()
        self._records_seen = len(records)
        finished, adopting = sort_pending(rows, records, now)
        await self._each(finished, self._store.pending.settle)
        certificate = self._current_certificate()
        todo = plan(
            desired, records, remote, now, self._endpoints.notification_url, adopting, certificate, self._tenant
        )
        # Computed once, so removing N records costs O(N), not a table scan each.
        kept = {resource_key(d.resource) for d in desired}
        removals = await self._each(todo.delete_remote, self._delete_stray)
        deleted = await self._each(todo.delete, lambda r: self.remove(r, kept))
        created = await self._each(todo.create, lambda d: self.create(d, now))
        recreated = await self._each(todo.recreate, lambda r: self.recreate(r, now))
        renewed = await self._each(todo.renew, lambda r: self.renew(r, now))
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
            service=self._service,
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
            query=want.query,
            delivery=want.delivery,
        )
        if want.include_resource_data:
            self._rich.add(resource_key(want.resource))
        return await self._establish(record, now)

    async def recreate(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Replace a subscription (Graph lost it, or its query changed); the cursor is kept, so the gap is resynced.

        The record keeps the old id and clientState until the new subscription is
        active, so notifications queued for the old one still resolve; the old one is
        deleted only then, so no change falls between the two. If creation fails, the
        record is marked failed and the next tick tries again.
        """
        return await self._establish(record, now)

    async def renew(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Extend a subscription to its resource's maximum lifetime; re-create it on 404.

        A subscription with resource data whose certificate is not the current one
        (NOTIFICATION_CERTIFICATE changed) gets the new certificate with the same PATCH, as
        Graph's key rotation guide says (GD concepts/change-notifications-with-resource-data.md,
        "Rotating keys"); should Graph refuse that (400), the subscription is re-created with it.
        """
        encryption = self._encryption(record.resource)
        expiry = next_expiry(record.resource, now, encryption is not None)
        moving = encryption if encryption is not None and not encrypted_for(record, encryption) else None
        try:
            granted = await self._write(lambda: self._patch(record.subscription_id, expiry, moving))
        except SubscriptionNotFoundError:
            log.info("subscription %s is gone at Graph: re-creating it", record.subscription_id)
            return await self.recreate(record, now)
        except GraphRequestError as exc:
            if moving is None or exc.graph_status != 400:
                raise
            log.warning("Graph refused a new certificate for %s: re-creating it", record.subscription_id)
            return await self.recreate(record, now)
        renewed = record.activated(record.subscription_id, granted, now)
        if moving is not None:
            renewed = replace(renewed, certificate_id=moving[1], certificate_thumbprint=thumbprint(moving[0]))
            log.info("subscription %s moved to certificate %s", record.subscription_id, moving[1])
        await self._store.save(renewed)
        return renewed

    async def _patch(self, subscription_id: str, expiry: datetime, moving: tuple[str, str] | None) -> datetime:
        if moving is None:
            # Only rich subscriptions ever move: SharePoint's gateway takes no encryption.
            granted: datetime = await self._graph.renew_subscription(subscription_id, expiry)
        else:
            granted = await self._graph.renew_subscription(subscription_id, expiry, encryption=moving)
        return granted

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
            await self._sync.forget(record.resource, record.tenant)

    async def forsake(self, record: SubscriptionRecord) -> None:
        """Delete a subscription whose tenant is leaving: at Graph if Graph still answers, then its record and cursor.

        Unlike ``remove``, a refusal from Graph (the tenant revoked the app) stops nothing.
        """
        if record.subscription_id:
            try:
                await self._write(lambda: self._graph.delete_subscription(record.subscription_id))
            except Exception as exc:  # noqa: BLE001 - the tenant may no longer let the app in
                log.info("subscription %s not deleted at Graph (%s)", record.subscription_id, type(exc).__name__)
        await self._store.delete(record.key, record.subscription_id)
        await self._sync.forget(record.resource, record.tenant)

    async def settle_pending(self) -> None:
        """Drop this reconciler's pending creations, deleting at Graph any subscription one of them names."""
        for row in await self._store.pending.all():
            if row.subscription_id:
                await self._retire_remote(row.subscription_id)
            await self._store.pending.settle(row.key)

    async def _establish(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        # Saved first, so a crash leaves a trace the next tick can finish; the old id stays in it.
        attempt = replace(record, status=CREATING, updated_at=self._clock())
        await self._store.save(attempt)
        try:
            await self._sync.start(record.resource, self._full, record.tenant)
            earlier = await self._store.pending.get(record.key)
            if earlier is not None and earlier.subscription_id:
                # Graph created one for an attempt that died before its record named it: finish that one.
                created = earlier
                log.info("adopting subscription %s, created before a crash", created.subscription_id)
            else:
                created = await self._write(lambda: self._post(record, now))
            active = replace(
                attempt.activated(created.subscription_id, created.expires_at or now, now, created.client_state),
                certificate_id=created.certificate_id,
                certificate_thumbprint=created.certificate_thumbprint,
            )
            # The new id row is written with the record; the old one goes only once the record has moved on.
            await self._store.save(active)
        except Exception:
            await self._mark_failed(attempt)
            raise
        await self._store.pending.settle(created)
        if record.subscription_id and record.subscription_id != active.subscription_id:
            # Graph allows several subscriptions on one resource: the old one goes once the new one is live.
            await self._retire_remote(record.subscription_id)
        # Changes made while no subscription existed reach no notification: look now.
        await self.request_sync(active)
        log.info("created subscription %s for %s", active.subscription_id, record.resource)
        return active

    async def _mark_failed(self, attempt: SubscriptionRecord) -> None:
        try:
            await self._store.save(replace(attempt, status=FAILED, updated_at=self._clock()))
        except Exception:  # noqa: BLE001 - best effort: a creating record also counts as dead after a while
            log.warning("could not mark subscription %s as failed", attempt.key)

    async def _post(self, record: SubscriptionRecord, now: datetime) -> PendingCreation:
        encryption = self._encryption(record.resource)
        expiry = next_expiry(record.resource, now, encryption is not None)
        # An Event Grid subscription sends both its notifications and its lifecycle events to the topic.
        urls = (record.delivery, record.delivery) if record.delivery else self._endpoints.urls
        return await create_recorded(self._graph, self._store.pending, record, urls, encryption, expiry, self._clock)

    def _encryption(self, resource: str) -> tuple[str, str] | None:
        """The certificate (base64 DER, id) to subscribe ``resource`` with, when it asks for resource data."""
        return self._encryption_for(resource, resource_key(resource) in self._rich)

    def _current_certificate(self) -> tuple[str, str] | None:
        """(id, thumbprint) of the certificate rich subscriptions are made with now; None without one."""
        current = self._encryption_for("", True)
        return (current[1], thumbprint(current[0])) if current is not None else None

    async def _list_remote(self) -> list[RemoteSubscription]:
        """Every subscription this app has at Graph, page by page within the list budget."""
        return await self._graph.list_subscriptions(pace=self._list_budget.slot)

    async def _delete_remote(self, subscription_id: str) -> None:
        await self._write(lambda: self._graph.delete_subscription(subscription_id))

    async def _delete_stray(self, subscription_id: str) -> None:
        """Delete a subscription no record names (a duplicate, or one left by a crash) and its id row, if any."""
        await self._delete_remote(subscription_id)
        await self._store.retire(subscription_id)

    async def _retire_remote(self, subscription_id: str) -> None:
        """Delete a replaced subscription; should that fail, it is a stray the next listing deletes."""
        try:
            await self._delete_stray(subscription_id)
        except Exception as exc:  # noqa: BLE001 - the new subscription is live: this is tidying up
            log.warning("replaced subscription %s not deleted yet (%s)", subscription_id, type(exc).__name__)

    async def request_sync(self, record: SubscriptionRecord) -> None:
        """Ask the queue trigger for a delta pass of ``record``'s resource."""
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
