"""Runs one sink's queue: deliver, retry with back-off, or poison, never drop.

A retryable failure (timeout, 408, 429, 5xx) is re-enqueued with a growing
visibility delay (at least the destination's ``Retry-After``), carrying its retry
count, up to the sink's ``maxAttempts``; the host's own fixed 5 s retry is kept for
unexpected errors (storage down), poisoned on its last attempt like the core does.
A 4xx other than 408 and 429 is poisoned at once. The poison queue holds the
original message text, so moving it back onto the sink's queue replays it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import DeliveryDeferredError, DeliveryRejectedError, DeliveryRetryError
from ..queues import MessageQueue, move_to_poison
from .config import Delivery
from .contract import Sink

log = logging.getLogger(__name__)
# host.json's maxDequeueCount: the host's attempt after which a message is poisoned.
HOST_ATTEMPTS = 5
MAX_DELAY = 3600.0
# A message waiting on its item's earlier event gives up waiting after this many deferrals.
MAX_DEFERRALS = 720


@dataclass(frozen=True)
class SinkMessage:
    """A sink queue message: the payload, and how often it was retried or deferred."""

    payload: dict[str, Any]
    retries: int = 0
    deferrals: int = 0

    @classmethod
    def from_text(cls, text: str) -> SinkMessage:
        """A bare payload (as the outlet writes it) or a retry wrapper; ValueError otherwise."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if "sinkRetry" in data and isinstance(data.get("payload"), dict):
            return cls(data["payload"], int(data["sinkRetry"]), int(data.get("sinkDeferrals", 0)))
        return cls(data)

    def payload_text(self) -> str:
        """The payload alone: what the poison queue keeps, ready to replay."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False)

    def to_text(self) -> str:
        """The wrapper written when re-enqueuing."""
        body = {"sinkRetry": self.retries, "sinkDeferrals": self.deferrals, "payload": self.payload}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def backoff(retries: int, base: float, retry_after: float | None) -> float:
    """Seconds before retry number ``retries + 1``: doubling from ``base``, never below Retry-After."""
    delay = min(base * 2.0**retries, MAX_DELAY)
    return max(delay, min(retry_after or 0.0, MAX_DELAY))


class SinkRunner:
    """Handles the messages of one sink's queue."""

    def __init__(
        self,
        sink: Sink,
        delivery: Delivery,
        queue: MessageQueue,
        poison: MessageQueue,
        retry_base: float = 2.0,
        host_attempts: int = HOST_ATTEMPTS,
    ) -> None:
        self.sink = sink
        self._delivery = delivery
        self._queue = queue
        self._poison = poison
        self._retry_base = retry_base
        self._host_attempts = host_attempts

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
            await move_to_poison(self._poison, text)
            return "poisoned"
        try:
            await self.sink.deliver([message.payload])
        except DeliveryRejectedError as exc:
            log.error("sink %s: destination refused a message (%s): moved to poison", self.queue, exc)
            return await self._give_up(message)
        except DeliveryDeferredError as exc:
            if message.deferrals >= MAX_DEFERRALS:
                log.error("sink %s: a message waited too long: moved to poison", self.queue)
                return await self._give_up(message)
            later = SinkMessage(message.payload, message.retries, message.deferrals + 1)
            await self._queue.send(later.to_text(), delay_seconds=exc.delay)
            return "deferred"
        except DeliveryRetryError as exc:
            retries = message.retries + 1
            if retries >= self._delivery.max_attempts:
                log.error("sink %s: failed %d times (%s): moved to poison", self.queue, retries, exc)
                return await self._give_up(message)
            delay = backoff(message.retries, self._retry_base, exc.retry_after)
            log.warning("sink %s: %s; retry %d in %.0f s", self.queue, exc, retries, delay)
            await self._queue.send(SinkMessage(message.payload, retries).to_text(), delay_seconds=delay)
            return "retrying"
        except Exception as exc:
            if attempt < self._host_attempts:
                raise
            log.error("sink %s: failed %d times (%s): moved to poison", self.queue, attempt, type(exc).__name__)
            return await self._give_up(message)
        return "delivered"

    async def _give_up(self, message: SinkMessage) -> str:
        await move_to_poison(self._poison, message.payload_text())
        await self.sink.abandon([message.payload])
        return "poisoned"
