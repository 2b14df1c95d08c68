"""Runs one sink's queue: deliver, retry with back-off, wait, or poison, never drop.

A failure that may pass (timeout, connection error, 5xx, 429, 408, a closed door: 401,
403, 404; storage or Graph trouble) is re-enqueued with a visibility delay from the
sink's RetryPolicy (model/schedule.py), the message carrying its retry count and the time of
its first failure, until the sink's horizon (``retryHours``, default 24) has passed: an
outage of hours is waited out, not poisoned. A refusal is poisoned at once: a 4xx that
means "never" (400, 410, 413, 422…) or a name Blob storage cannot hold. A later event of
an item waits, re-enqueued, while an earlier one is retried, for the same horizon. Only
when re-enqueuing itself fails does the host's own retry apply (poisoned on its last
attempt, like the core's queue). The poison queue holds the original message text, so
moving it back onto the sink's queue replays it. Every poisoning is counted by reason.
A message in either event form (EVENT_FORMAT) reaches the sink as the native event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.clock import format_time, optional_time, utcnow
from shared.errors import DeliveryDeferredError, DeliveryRejectedError, DeliveryRetryError
from shared.model.event_formats import native_event
from shared.model.names import MAX_DEQUEUE_COUNT
from shared.model.schedule import RetryPolicy
from shared.model.sinks import Delivery
from shared.queues.message_queue import MessageQueue, move_to_poison
from shared.sinks.contract import Sink
from shared.telemetry import count

log = logging.getLogger(__name__)
# Counted per sink and reason: refused, retried (past the horizon), waited, malformed.
POISONED = "graphhooks.sinks.poisoned"


@dataclass(frozen=True)
class SinkMessage:
    """A sink queue message: the payload, how often it was retried or waited, and since when."""

    payload: dict[str, Any]
    retries: int = 0
    deferrals: int = 0
    since: datetime | None = None  # the first failed or deferred attempt

    @classmethod
    def from_text(cls, text: str) -> SinkMessage:
        """A bare payload (as the outlet writes it) or a retry wrapper; ValueError otherwise."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if "sinkRetry" in data and isinstance(data.get("payload"), dict):
            since = optional_time(data.get("sinkSince"))
            return cls(data["payload"], int(data["sinkRetry"]), int(data.get("sinkDeferrals", 0)), since)
        return cls(data)

    @property
    def event(self) -> dict[str, Any]:
        """What the sink is handed: the native event, whichever form the queue holds it in."""
        return native_event(self.payload)

    def payload_text(self) -> str:
        """The payload alone: what the poison queue keeps, ready to replay."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False)

    def to_text(self) -> str:
        """The wrapper written when re-enqueuing."""
        body: dict[str, Any] = {"sinkRetry": self.retries, "sinkDeferrals": self.deferrals}
        if self.since is not None:
            body["sinkSince"] = format_time(self.since)
        body["payload"] = self.payload
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class SinkRunner:
    """Handles the messages of one sink's queue."""

    def __init__(
        self,
        sink: Sink,
        delivery: Delivery,
        queue: MessageQueue,
        poison: MessageQueue,
        policy: RetryPolicy | None = None,
        host_attempts: int = MAX_DEQUEUE_COUNT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sink = sink
        self._delivery = delivery
        self._queue = queue
        self._poison = poison
        self._policy = policy or delivery.policy
        self._host_attempts = host_attempts
        self._clock = clock

    @property
    def queue(self) -> str:
        """The sink's queue name."""
        return self._delivery.queue

    async def handle(self, body: str | bytes, attempt: int = 1) -> str:
        """Deliver one message; return what happened; raise to have the host retry it."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            message = SinkMessage.from_text(text)
        except (ValueError, TypeError):
            log.error("sink %s: a message is not JSON: moved to poison", self.queue)
            count(POISONED, sink=self.queue, reason="malformed")
            await move_to_poison(self._poison, text)
            return "poisoned"
        try:
            await self.sink.deliver([message.event])
        except DeliveryRejectedError as exc:
            log.error("sink %s: event %s refused (%s): moved to poison", self.queue, _id(message), exc)
            return await self._give_up(message, "refused")
        except DeliveryDeferredError as exc:
            return await self._wait(message, exc.delay, attempt)
        except DeliveryRetryError as exc:
            return await self._retry(message, str(exc), exc.retry_after, attempt)
        except Exception as exc:  # noqa: BLE001 - storage or Graph trouble: retried like an outage
            return await self._retry(message, type(exc).__name__, None, attempt)
        return "delivered"

    async def _retry(self, message: SinkMessage, reason: str, retry_after: float | None, attempt: int) -> str:
        now = self._clock()
        since = message.since or now
        delay = self._policy.retry_delay(message.retries, since, now, retry_after)
        retries = message.retries + 1
        if delay is None:
            text = "sink %s: event %s failed %d times since %s, last %s: moved to poison"
            log.error(text, self.queue, _id(message), retries, format_time(since), reason)
            return await self._give_up(message, "retried")
        log.warning("sink %s: event %s: %s; retry %d in %.0f s", self.queue, _id(message), reason, retries, delay)
        later = SinkMessage(message.payload, retries, message.deferrals, since)
        return await self._requeue(later, delay, message, attempt) or "retrying"

    async def _wait(self, message: SinkMessage, hint: float, attempt: int) -> str:
        now = self._clock()
        since = message.since or now
        delay = self._policy.wait_delay(message.deferrals, since, now, hint)
        if delay is None:
            text = "sink %s: event %s waited for its item since %s: moved to poison"
            log.error(text, self.queue, _id(message), format_time(since))
            return await self._give_up(message, "waited")
        later = SinkMessage(message.payload, message.retries, message.deferrals + 1, since)
        return await self._requeue(later, delay, message, attempt) or "deferred"

    async def _requeue(self, later: SinkMessage, delay: float, message: SinkMessage, attempt: int) -> str | None:
        """Re-enqueue (None); if even that fails, leave the message to the host, poisoned on its last attempt."""
        try:
            await self._queue.send(later.to_text(), delay_seconds=delay)
        except Exception:
            if attempt < self._host_attempts:
                raise
            log.error("sink %s: event %s could not be re-enqueued: moved to poison", self.queue, _id(message))
            return await self._give_up(message, "retried")
        return None

    async def _give_up(self, message: SinkMessage, reason: str) -> str:
        count(POISONED, sink=self.queue, reason=reason)
        await move_to_poison(self._poison, message.payload_text())
        await self.sink.abandon([message.event])
        return "poisoned"


def _id(message: SinkMessage) -> str:
    return str(message.event.get("id", "?"))
