"""The queue trigger's work: turn one stored envelope into delta runs and repairs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import refusals, telemetry
from shared.clock import utcnow
from shared.errors import MalformedBodyError, UnsupportedResourceError
from shared.model.names import MAX_DEQUEUE_COUNT
from shared.model.notifications import Envelope
from shared.model.subscription import SubscriptionRecord
from shared.queues.claims import redeem
from shared.queues.message_queue import MessageQueue, move_to_poison
from shared.queues.waiting import WaitingMessages
from shared.reconcile.reconciler import Reconciler
from shared.security.resource_data import resolves
from shared.stores.subscriptions import SubscriptionStore
from shared.sync.coalescing import Action
from shared.sync.synchronizer import Synchronizer

if TYPE_CHECKING:
    from shared.security.resource_data import ResourceDataReader
    from shared.tenants.work import TenantWork

log = logging.getLogger(__name__)
# A subscription's last notification time is written at most this often per instance (one small write).
NOTE_EVERY_SECONDS = 60.0
# Envelopes the HTTP path stored: Graph's (and SharePoint's) notifications, not the app's own sync requests.
_FROM_OUTSIDE = frozenset({"notifications", "lifecycle"})
# Envelopes that name tenants to start at once (admin consent, `graphhooks tenants add`): {"tenantId": ...} items.
TENANT_SOURCE = "tenant"


@dataclass(frozen=True)
class Summary:
    """What one envelope led to."""

    runs: int = 0
    skipped: int = 0
    deferred: int = 0
    events: int = 0
    unknown: int = 0
    poisoned: int = 0


class Processor:
    """Handles envelopes from the notifications queue."""

    def __init__(
        self,
        store: SubscriptionStore,
        synchronizer: Synchronizer,
        reconciler: Reconciler | Callable[[str], Reconciler],
        notifications: MessageQueue,
        poison: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = MAX_DEQUEUE_COUNT,
        resource_data: ResourceDataReader | None = None,
        tenants: TenantWork | None = None,
    ) -> None:
        # TENANT_MODE=multi: each tenant's reconciler (``reconciler`` given as tenant -> Reconciler), its status,
        # and its onboarding; None in a single-tenant deployment.
        self._tenants = tenants
        # A tenant's notifications put off while one of the same subscription waits ride on it (queues/waiting.py).
        self._waiting = WaitingMessages(notifications) if tenants is not None else None
        # Turns notifications with encryptedContent into events; None when no certificate is configured.
        self._resource_data = resource_data
        self._store = store
        self._sync = synchronizer
        lookup = callable(reconciler) and not hasattr(reconciler, "recreate")
        self._reconciler_of: Callable[[str], Reconciler] | None = reconciler if lookup else None  # type: ignore[assignment]
        self._reconciler: Reconciler | None = None if lookup else reconciler  # type: ignore[assignment]
        self._notifications = notifications
        self._poison = poison
        self._clock = clock
        self._max_attempts = max_attempts
        # Record key -> monotonic time of its last "last notification" write by this instance.
        self._noted: dict[str, float] = {}

    async def handle(self, body: str | bytes, inserted_at: datetime | None = None, attempt: int = 1) -> Summary:
        """Process one queue message; raise to have the host retry it.

        ``inserted_at`` is storage's insertion time of the message, which coalescing
        compares with storage's time of a pass start (one clock). On the last
        attempt a failing message is moved to the poison queue here, with no
        expiry, since the host's own poison copy expires after 7 days.
        """
        try:
            return await self._handle(body, inserted_at)
        except MalformedBodyError:
            log.error("a message on the notifications queue is not an envelope: moved to poison")
            await self._poison_message(body)
            return Summary(poisoned=1)
        except Exception as exc:
            if attempt < self._max_attempts:
                raise
            log.error("message failed %d times (%s): moved to poison", attempt, type(exc).__name__)
            await self._poison_message(body)
            return Summary(poisoned=1)

    def _reconciler_for(self, record: SubscriptionRecord) -> Reconciler:
        if self._reconciler_of is not None:
            return self._reconciler_of(record.tenant)
        assert self._reconciler is not None
        return self._reconciler

    async def _poison_message(self, body: str | bytes) -> None:
        await move_to_poison(self._poison, body)

    async def _note(self, record: SubscriptionRecord, received_at: datetime) -> None:
        """Record the subscription's last notification (shown by `graphhooks subscriptions list`), once a minute."""
        last = self._noted.get(record.key)
        now = time.monotonic()
        if last is not None and now - last < NOTE_EVERY_SECONDS:
            return
        self._noted[record.key] = now
        try:
            await self._store.mark_notified(record.key, received_at)
        except Exception as exc:  # noqa: BLE001 - an operator's figure: never worth failing a message for
            log.warning("last notification of %s not recorded: %s", record.subscription_id, type(exc).__name__)

    async def _handle(self, body: str | bytes, inserted_at: datetime | None) -> Summary:
        # Items over 48 KiB wait in blobs: the envelope carries claims for them (queues/claims.py).
        envelope = await redeem(Envelope.from_json(body), self._notifications.claims)
        # Continues the trace of the request that stored the message, across the queue hop.
        with telemetry.span("graphhooks.process", envelope.traceparent, source=envelope.source):
            summary = await self._process(envelope, inserted_at)
        telemetry.count(telemetry.EVENTS_EMITTED, summary.events)
        return summary

    async def _process(self, envelope: Envelope, inserted_at: datetime | None) -> Summary:
        # A deferred copy is judged by when its items were first stored, not by its own (later) insertion:
        # else the pass that made it wait never covers it, and each deferral asks for one more pass.
        notified_at = envelope.notified_at or inserted_at or envelope.received_at
        if envelope.source == TENANT_SOURCE:
            return await self._onboard(envelope)
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in envelope.items:
            groups.setdefault(str(item.get("subscriptionId", "")), []).append(item)
        results = await asyncio.gather(
            *(self._subscription(envelope, notified_at, sid, items) for sid, items in groups.items()),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Finished groups stay finished: a retry finds them covered and skips them.
            raise failures[0]
        return _sum([r for r in results if isinstance(r, Summary)])

    async def _subscription(
        self, envelope: Envelope, notified_at: datetime, subscription_id: str, items: list[dict[str, Any]]
    ) -> Summary:
        record = await self._store.find(subscription_id) if subscription_id else None
        if record is None:
            log.warning("notification for subscription %s, which is no longer stored: dropped", subscription_id)
            refusals.count(refusals.Reason.UNKNOWN_SUBSCRIPTION, len(items), source="processor")
            return Summary(unknown=len(items))
        if self._tenants is not None and record.tenant and not await self._tenants.served(record.tenant):
            # Suspended or leaving: no Graph call; a resumed tenant is resynced whole.
            refusals.count(refusals.Reason.TENANT_SUSPENDED, len(items), source="processor")
            return Summary(skipped=len(items))
        if envelope.source in _FROM_OUTSIDE:
            await self._note(record, envelope.received_at)
        if self._tenants is None or not record.tenant:
            return await self._handle_items(envelope, notified_at, record, items)
        return await self._tenant_items(self._tenants, envelope, notified_at, record, items)

    async def _tenant_items(
        self,
        tenants: TenantWork,
        envelope: Envelope,
        notified_at: datetime,
        record: SubscriptionRecord,
        items: list[dict[str, Any]],
    ) -> Summary:
        """A tenant's items, kept from holding a worker while the tenant throttles or has its fill of passes."""
        wait = tenants.hold(record.tenant, envelope.deferrals)
        if wait is not None:
            await self._defer(envelope, items, timedelta(seconds=wait), notified_at, record)
            return Summary(deferred=1)
        with tenants.running(record.tenant):
            try:
                summary = await self._handle_items(envelope, notified_at, record, items)
                if summary.runs:
                    await tenants.passed(record.tenant, self._clock())
                return summary
            except Exception as exc:
                wait = tenants.throttled(record.tenant, exc)
                if wait is not None:
                    log.info("tenant %s throttles: its notification put off %.0f s", record.tenant, wait)
                    await self._defer(envelope, items, timedelta(seconds=wait), notified_at, record)
                    return Summary(deferred=1)
                if not await tenants.lost(record.tenant, exc, self._clock()):
                    raise
        log.warning("tenant %s refused the app's token: suspended, its notification dropped", record.tenant)
        refusals.count(refusals.Reason.TENANT_SUSPENDED, len(items), source="processor")
        return Summary(skipped=len(items))

    async def _onboard(self, envelope: Envelope) -> Summary:
        """Start the tenants an admin consent (or `graphhooks tenants add`) registered: their subscriptions, now."""
        if self._tenants is None:
            log.warning("a tenant message in a single-tenant deployment: ignored")
            return Summary()
        for item in envelope.items:
            tenant = item.get("tenantId")
            if isinstance(tenant, str) and tenant:
                await self._tenants.onboard(tenant, self._clock())
        return Summary()

    async def _handle_items(
        self, envelope: Envelope, notified_at: datetime, record: SubscriptionRecord, items: list[dict[str, Any]]
    ) -> Summary:
        events = {str(item["lifecycleEvent"]) for item in items if item.get("lifecycleEvent")}
        if "subscriptionRemoved" in events:
            # Re-create, then resync: changes made while no subscription existed reached no notification.
            active = await self._reconciler_for(record).recreate(record, self._clock())
            await self._sync.resync(active.resource, active.tenant)
            return await self._synchronize(envelope, notified_at, active, items)
        if "missed" in events:
            # Graph dropped notifications (Outlook): enumerate, reporting what changed and what went.
            await self._sync.resync(record.resource, record.tenant)
        if "reauthorizationRequired" in events:
            await self._reconciler_for(record).reauthorize(record, self._clock())
            if events == {"reauthorizationRequired"}:
                return Summary()
        # Resource data, or a Teams deletion naming its message: told by the notification, not by a delta run.
        rich = [item for item in items if resolves(item, record.resource)]
        if not rich:
            return await self._synchronize(envelope, notified_at, record, items)
        decrypted = await self._decrypt(envelope, record, rich)
        rest = [item for item in items if not resolves(item, record.resource)]
        if not rest:
            return decrypted
        # A missed event or a plain notification beside them still asks for a pass.
        synced = await self._synchronize(envelope, notified_at, record, rest)
        return _sum([synced, decrypted])

    async def _decrypt(self, envelope: Envelope, record: SubscriptionRecord, rich: list[dict[str, Any]]) -> Summary:
        """Rich notifications carry the resource itself: committed like a delta page, with no Graph call.

        One that cannot be decrypted (a certificate that was removed or rotated too early)
        is moved to the poison queue, never dropped, so an operator can replay it once the
        certificate is fixed. While a pass holds the resource's lease, they wait (deferred).
        """
        if self._resource_data is None:
            log.error(
                "subscription %s: resource data but no NOTIFICATION_CERTIFICATE: poisoned", record.subscription_id
            )
            refusals.count(refusals.Reason.DECRYPTION_FAILED, len(rich), source="processor")
            await self._poison_items(envelope, rich)
            return Summary(poisoned=len(rich))
        reading = self._resource_data.read(record.subscription_id, rich)
        if reading.undecryptable:
            await self._poison_items(envelope, reading.undecryptable)
            refusals.count(refusals.Reason.DECRYPTION_FAILED, len(reading.undecryptable), source="processor")
        if reading.outside_window:
            refusals.count(refusals.Reason.OUTSIDE_CALENDAR_WINDOW, reading.outside_window, source="processor")
        readable = [item for item, _ in reading.told]
        outcome = await self._sync.apply_notified(record, reading.told, envelope.deferrals)
        summary = Summary(events=outcome.events, poisoned=len(reading.undecryptable))
        if outcome.decision.action is Action.DEFER:
            await self._defer(envelope, readable, outcome.decision.delay)
            return replace(summary, deferred=1)
        return summary

    async def _poison_items(self, envelope: Envelope, items: list[dict[str, Any]]) -> None:
        """Keep notifications that cannot be processed now, as an envelope an operator can replay."""
        kept = Envelope(envelope.source, envelope.received_at, items, 0, envelope.traceparent)
        await move_to_poison(self._poison, kept.to_json())

    async def _synchronize(
        self, envelope: Envelope, notified_at: datetime, record: SubscriptionRecord, items: list[dict[str, Any]]
    ) -> Summary:
        started = time.monotonic()
        try:
            outcome = await self._sync.sync(record, notified_at, envelope.deferrals)
        except UnsupportedResourceError as exc:
            log.error("subscription %s: %s", record.subscription_id, exc)
            return Summary(unknown=len(items))
        action = outcome.decision.action
        if action is Action.SKIP:
            return Summary(skipped=1, events=outcome.events)
        if action is Action.DEFER:
            await self._defer(envelope, items, outcome.decision.delay, notified_at)
            return Summary(deferred=1, events=outcome.events)
        telemetry.count(telemetry.DELTA_RUNS)
        telemetry.record_duration(time.monotonic() - started)
        return Summary(runs=1, events=outcome.events)

    async def _defer(
        self,
        envelope: Envelope,
        items: list[dict[str, Any]],
        delay: timedelta,
        notified_at: datetime | None = None,
        joinable: SubscriptionRecord | None = None,
    ) -> None:
        """Re-queue ``items`` with a delay; a tenant's (``joinable``) may ride on its subscription's waiting message."""
        later = replace(
            envelope, items=items, deferrals=envelope.deferrals + 1, notified_at=notified_at or envelope.notified_at
        )
        seconds = delay.total_seconds()
        if joinable is not None and self._waiting is not None and _asks_for_a_pass(items, joinable):
            await self._waiting.put_off(joinable.key, later, seconds)
            return
        await self._notifications.send(later.to_json(), delay_seconds=seconds)


def _asks_for_a_pass(items: list[dict[str, Any]], record: SubscriptionRecord) -> bool:
    """True when the items ask only for a delta pass: no lifecycle event, no resource data to apply."""
    return all(not item.get("lifecycleEvent") and not resolves(item, record.resource) for item in items)


def _sum(summaries: list[Summary]) -> Summary:
    """The summaries added up, field by field."""
    return Summary(*(sum(values) for values in zip(*(astuple(s) for s in summaries), strict=True)))
