"""The queue trigger's work: turn one stored envelope into delta runs and repairs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import utcnow
from .coalescing import Action
from .errors import MalformedBodyError, UnsupportedResourceError
from .notifications import Envelope
from .queues import MessageQueue
from .renewer import Renewer
from .stores.subscriptions import SubscriptionRecord, SubscriptionStore
from .synchronizer import Synchronizer

log = logging.getLogger(__name__)
# host.json's extensions.queues.maxDequeueCount: the attempt after which a message is poisoned.
MAX_ATTEMPTS = 5


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
        renewer: Renewer,
        notifications: MessageQueue,
        poison: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._store = store
        self._sync = synchronizer
        self._renewer = renewer
        self._notifications = notifications
        self._poison = poison
        self._clock = clock
        self._max_attempts = max_attempts

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

    async def _poison_message(self, body: str | bytes) -> None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        await self._poison.send(text)

    async def _handle(self, body: str | bytes, inserted_at: datetime | None) -> Summary:
        envelope = Envelope.from_json(body)
        notified_at = inserted_at or envelope.received_at
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in envelope.items:
            groups.setdefault(str(item.get("subscriptionId", "")), []).append(item)
        results = await asyncio.gather(
            *(self._subscription(envelope, notified_at, sid, items) for sid, items in groups.items()),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        summaries = [r for r in results if isinstance(r, Summary)]
        if failures:
            # Finished groups stay finished: a retry finds them covered and skips them.
            raise failures[0]
        return Summary(
            runs=sum(s.runs for s in summaries),
            skipped=sum(s.skipped for s in summaries),
            deferred=sum(s.deferred for s in summaries),
            events=sum(s.events for s in summaries),
            unknown=sum(s.unknown for s in summaries),
        )

    async def _subscription(
        self, envelope: Envelope, notified_at: datetime, subscription_id: str, items: list[dict[str, Any]]
    ) -> Summary:
        record = await self._store.find(subscription_id) if subscription_id else None
        if record is None:
            log.warning("notification for subscription %s, which is no longer stored: dropped", subscription_id)
            return Summary(unknown=len(items))
        events = {str(item["lifecycleEvent"]) for item in items if item.get("lifecycleEvent")}
        if "subscriptionRemoved" in events:
            # Re-creating requests a resync of its own, which covers these items too.
            await self._renewer.recreate(record, self._clock())
            return Summary()
        if "reauthorizationRequired" in events:
            await self._renewer.reauthorize(record, self._clock())
            if events == {"reauthorizationRequired"}:
                return Summary()
        return await self._synchronize(envelope, notified_at, record, items)

    async def _synchronize(
        self, envelope: Envelope, notified_at: datetime, record: SubscriptionRecord, items: list[dict[str, Any]]
    ) -> Summary:
        try:
            outcome = await self._sync.sync(record, notified_at, envelope.deferrals)
        except UnsupportedResourceError as exc:
            log.error("subscription %s: %s", record.subscription_id, exc)
            return Summary(unknown=len(items))
        action = outcome.decision.action
        if action is Action.SKIP:
            return Summary(skipped=1)
        if action is Action.DEFER:
            await self._defer(envelope, items, outcome.decision.delay)
            return Summary(deferred=1)
        return Summary(runs=1, events=outcome.events)

    async def _defer(self, envelope: Envelope, items: list[dict[str, Any]], delay: timedelta) -> None:
        later = Envelope(envelope.source, envelope.received_at, items, envelope.deferrals + 1)
        await self._notifications.send(later.to_json(), delay_seconds=delay.total_seconds())
