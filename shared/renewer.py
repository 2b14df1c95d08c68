"""The renew timer's work: carry out reconciliation plans, and lifecycle repairs."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .budget import WriteBudget
from .clock import utcnow
from .errors import SubscriptionConflictError, SubscriptionNotFoundError
from .graph import GraphGateway
from .lifetimes import next_expiry
from .notifications import Envelope
from .queues import MessageQueue
from .reconciliation import plan
from .settings import DesiredSubscription
from .subscriptions import CREATING, SubscriptionRecord, SubscriptionStore
from .synchronizer import Synchronizer

log = logging.getLogger(__name__)
# Writes in flight at once: enough to use Graph's whole budget of 500 per 20 s
# when each write takes a few hundred milliseconds.
CONCURRENCY = 32


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
    ) -> None:
        self._graph = graph
        self._store = store
        self._sync = synchronizer
        self._notifications = notifications
        self._endpoints = endpoints
        self._full = full_initial_sync
        self._gate = asyncio.Semaphore(concurrency)
        self._budget = budget or WriteBudget()
        self._clock = clock

    async def reconcile(self, desired: Sequence[DesiredSubscription], now: datetime | None = None) -> Report:
        """Make Graph and the table match ``desired``; failures are counted and logged."""
        now = now or self._clock()
        records = await self._store.list()
        remote = await self._graph.list_subscriptions()
        todo = plan(desired, records, remote, now, self._endpoints.notification_url)
        removals = await self._each(todo.delete_remote, self._delete_remote)
        deleted = await self._each(todo.delete, self.remove)
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
        )
        log.info("reconciled subscriptions: %s", report)
        return report

    async def create(self, want: DesiredSubscription, now: datetime) -> SubscriptionRecord:
        """Create a subscription with a fresh clientState, after recording where changes start."""
        record = SubscriptionRecord(
            key=want.key,
            resource=want.resource,
            change_type=want.change_type,
            client_state=secrets.token_urlsafe(32),
            status=CREATING,
            updated_at=now,
        )
        # Saved first, so a crash leaves a trace the next run can finish.
        await self._store.save(record)
        await self._sync.start(want.resource, self._full)
        expiry = next_expiry(want.resource, now)
        try:
            remote = await self._write(lambda: self._post(record, expiry))
        except SubscriptionConflictError:
            await self._delete_conflicting(want)
            remote = await self._write(lambda: self._post(record, expiry))
        active = record.activated(remote.id, remote.expires_at or expiry, now)
        await self._store.save(active)
        # Changes made while no subscription existed reach no notification: look now.
        await self._request_sync(active)
        log.info("created subscription %s for %s", remote.id, want.resource)
        return active

    async def recreate(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Replace a subscription Graph lost; the cursor is kept, so the gap is resynced."""
        if record.subscription_id:
            await self._write(lambda: self._graph.delete_subscription(record.subscription_id))
        return await self.create(DesiredSubscription(record.resource, record.change_type), now)

    async def renew(self, record: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
        """Extend a subscription to its resource's maximum lifetime; re-create it on 404."""
        expiry = next_expiry(record.resource, now)
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

    async def remove(self, record: SubscriptionRecord) -> None:
        """Delete a subscription that is no longer desired, with its record and cursor."""
        if record.subscription_id:
            await self._write(lambda: self._graph.delete_subscription(record.subscription_id))
        await self._store.delete(record.key)
        others = [r for r in await self._store.list() if r.resource == record.resource]
        if not others:
            await self._sync.forget(record.resource)

    async def _post(self, record: SubscriptionRecord, expiry: datetime) -> Any:
        return await self._graph.create_subscription(
            record.resource,
            record.change_type,
            self._endpoints.notification_url,
            self._endpoints.lifecycle_url,
            record.client_state,
            expiry,
        )

    async def _delete_conflicting(self, want: DesiredSubscription) -> None:
        for sub in await self._graph.list_subscriptions():
            same = DesiredSubscription(sub.resource.strip("/"), sub.change_type).key == want.key
            if same and sub.notification_url == self._endpoints.notification_url:
                await self._delete_remote(sub.id)

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
