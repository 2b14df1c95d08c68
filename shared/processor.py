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
from .errors import UnsupportedResourceError
from .notifications import Envelope
from .queues import MessageQueue
from .renewer import Renewer
from .subscriptions import SubscriptionRecord, SubscriptionStore
from .synchronizer import Synchronizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """What one envelope led to."""

    runs: int = 0
    skipped: int = 0
    deferred: int = 0
    events: int = 0
    unknown: int = 0


class Processor:
    """Handles envelopes from the notifications queue."""

    def __init__(
        self,
        store: SubscriptionStore,
        synchronizer: Synchronizer,
        renewer: Renewer,
        notifications: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._sync = synchronizer
        self._renewer = renewer
        self._notifications = notifications
        self._clock = clock

    async def handle(self, body: str | bytes) -> Summary:
        """Process one queue message; raise to have the host retry it (then poison it)."""
        envelope = Envelope.from_json(body)
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in envelope.items:
            groups.setdefault(str(item.get("subscriptionId", "")), []).append(item)
        results = await asyncio.gather(
            *(self._subscription(envelope, sid, items) for sid, items in groups.items()),
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

    async def _subscription(self, envelope: Envelope, subscription_id: str, items: list[dict[str, Any]]) -> Summary:
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
        return await self._synchronize(envelope, record, items)

    async def _synchronize(
        self, envelope: Envelope, record: SubscriptionRecord, items: list[dict[str, Any]]
    ) -> Summary:
        try:
            outcome = await self._sync.sync(record, envelope.received_at, envelope.deferrals)
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
