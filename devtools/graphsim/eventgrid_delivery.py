"""Event Grid's push delivery of a partner topic's events, with its retry schedule and dead-lettering.

As learn azure/event-grid/delivery-and-retry documents it (MicrosoftDocs/azure-docs
articles/event-grid/delivery-and-retry.md):
- one event per request (batching is off by default), here a structured CloudEvent
  (``application/cloudevents+json``) with ``aeg-event-type: Notification`` and
  ``aeg-delivery-count``;
- 200-204 is success; 400, 403 and 413 are not retried (dead-lettered at once,
  ``deadletterreason`` ``NonRetriableError``, a name of ours); anything else, a connection error or
  no answer within 30 s is retried after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h,
  then every 12 h, no sooner than the status asks (401/404: 5 min, 408: 2 min, 503: 30 s);
- the event is dead-lettered after 30 attempts (``MaxDeliveryAttemptsExceeded``) or once its
  time to live, 1,440 minutes, has passed, as checked at the next attempt (``TimeToLiveExceeded``).
Unlike Event Grid, no randomization is added, so tests can count on the delays.

``RetryPolicy.scale`` multiplies every delay and the time to live (0.001 turns 10 s into 10 ms);
``schedule`` replaces the steps (the last repeats). Set them with ``--eventgrid-retry-scale`` or
``POST /_sim/eventgrid/retry``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .clock import graph_time
from .eventgrid import PartnerTopic, TopicRegistry, parse_url
from .eventgrid_events import cloud_event

log = logging.getLogger("graphsim.eventgrid")

SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
MAX_ATTEMPTS = 30
TTL_SECONDS = 1440 * 60.0
RESPONSE_TIMEOUT = 30.0
NOT_RETRIED = {400: "BadRequest", 403: "Forbidden", 413: "PayloadTooLarge"}
_OUTCOMES = {401: "Unauthorized", 404: "NotFound", 408: "TimedOut", 503: "Busy"}
_AT_LEAST = {401: 300.0, 404: 300.0, 408: 120.0, 503: 30.0}
DEAD_LETTER_LIMIT = 10_000
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


@dataclass
class RetryPolicy:
    """The retry schedule, its cap on attempts and the events' time to live, scaled for tests."""

    scale: float = 1.0
    schedule: tuple[float, ...] = SCHEDULE
    max_attempts: int = MAX_ATTEMPTS
    ttl_seconds: float = TTL_SECONDS

    def delay(self, attempt: int, status: int | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        step = self.schedule[min(attempt, len(self.schedule)) - 1]
        return max(step, _AT_LEAST.get(status or 0, 0.0)) * self.scale

    def as_json(self) -> dict[str, Any]:
        """The policy as the control API shows it."""
        return {
            "scale": self.scale,
            "schedule": list(self.schedule),
            "maxAttempts": self.max_attempts,
            "ttlSeconds": self.ttl_seconds,
        }


@dataclass
class EventGridChannel:
    """Publishes notifications to their partner topic and pushes them to its destination."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    topics: TopicRegistry = field(default_factory=TopicRegistry)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Shared with the webhook deliverer: rich shaping, pause, delay, duplicates and counters.
    owner: Any = None
    default_scale: float = 1.0  # what reset returns the policy's scale to (--eventgrid-retry-scale)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def pending(self) -> int:
        """Events accepted by a topic and not yet delivered or dead-lettered."""
        return sum(t.pending for t in self.topics.topics)

    def publish(self, url: str, items: list[dict[str, Any]], tenant_id: str, application_id: str) -> None:
        """Hand notifications to the topic ``url`` names: each becomes one CloudEvent."""
        topic = self.topics.find(parse_url(url, "notificationUrl"))
        for item in items:
            if topic is None:
                log.warning("no partner topic for %s; event dropped", url.split("&partnertopic=")[-1])
                continue
            topic.published += 1
            if not topic.accepts():
                topic.dropped_not_activated += 1
                continue
            event = cloud_event(self._shaped(item), tenant_id, application_id, self.now())
            topic.pending += 1
            task = asyncio.get_running_loop().create_task(self._deliver(topic, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _shaped(self, item: dict[str, Any]) -> dict[str, Any]:
        # A rich notification carries the validation tokens the webhook batch would (rich.py).
        if self.owner is None:
            return item
        body = self.owner.shape([item])
        shaped = dict(body["value"][0])
        if "validationTokens" in body:
            shaped["validationTokens"] = body["validationTokens"]
        return shaped

    async def _deliver(self, topic: PartnerTopic, event: dict[str, Any]) -> None:
        started, attempt = time.monotonic(), 0
        body = json.dumps(event).encode()
        try:
            if self.owner is not None:
                await self._wait_owner()
            while True:
                attempt += 1
                status = await self._post(topic, body, attempt)
                if status is not None and 200 <= status <= 204:
                    break
                reason = self._give_up(status, attempt, started)
                if reason is not None:
                    self._dead_letter(topic, event, reason, attempt, status)
                    return
                await asyncio.sleep(self.policy.delay(attempt, status))
                if time.monotonic() - started > self.policy.ttl_seconds * self.policy.scale:
                    self._dead_letter(topic, event, "TimeToLiveExceeded", attempt, status)
                    return
                if self.owner is not None:
                    await self.owner.resumed()
            topic.delivered += 1
            self._count_delivered(event)
            for _ in range(max(1, getattr(self.owner, "duplicates", 1)) - 1):
                await self._post(topic, body, attempt + 1)
        finally:
            topic.pending -= 1

    async def _wait_owner(self) -> None:
        await self.owner.resumed()
        if self.owner.delay_seconds > 0:
            await asyncio.sleep(self.owner.delay_seconds)
            await self.owner.resumed()

    def _give_up(self, status: int | None, attempt: int, started: float) -> str | None:
        if status in NOT_RETRIED:
            return "NonRetriableError"
        if attempt >= self.policy.max_attempts:
            return "MaxDeliveryAttemptsExceeded"
        return None

    def _count_delivered(self, event: dict[str, Any]) -> None:
        if self.owner is not None:
            self.owner.stats.items_delivered += 1
            self.owner.stats.lifecycle_delivered += int("lifecycleEvent" in event["data"])

    async def _post(self, topic: PartnerTopic, body: bytes, attempt: int) -> int | None:
        """One delivery attempt; the HTTP status, or None for a connection error or timeout."""
        stats = self.owner.stats if self.owner is not None else None
        headers = {
            "Content-Type": CONTENT_TYPE,
            "aeg-event-type": "Notification",
            "aeg-subscription-name": "GRAPHSIM",
            "aeg-delivery-count": str(attempt - 1),
            "aeg-metadata-version": "1.0",
        }
        if stats is not None:
            stats.attempts += 1
        try:
            async with self._http().post(
                str(topic.destination),
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=RESPONSE_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            if stats is not None:
                stats.failures["timeout" if isinstance(exc, TimeoutError) else "connection"] += 1
            return None
        if stats is not None:
            if 200 <= status <= 204:
                stats.successes += 1
            else:
                stats.failures[str(status)] += 1
        return status

    def _dead_letter(
        self, topic: PartnerTopic, event: dict[str, Any], reason: str, attempts: int, status: int | None
    ) -> None:
        topic.dead_lettered += 1
        outcome = "SocketError" if status is None else NOT_RETRIED.get(status) or _OUTCOMES.get(status, f"Http{status}")
        log.warning("dead-lettering event %s (%s) of %s: %s", event["id"], event["type"], topic.key.name, reason)
        if len(self.dead_letters) >= DEAD_LETTER_LIMIT:
            self.dead_letters.pop(0)
        self.dead_letters.append(
            event
            | {
                "deadletterreason": reason,
                "deliveryattempts": attempts,
                "lastdeliveryoutcome": outcome,
                "lasthttpstatuscode": status,
                "publishtime": event["time"],
                "lastdeliveryattempttime": graph_time(self.now()),
                "topic": topic.key.resource_id,
            }
        )

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=False))
        return self._session

    def clear(self) -> None:
        """Forget topics, dead letters and the retry policy's changes (reset); cancel deliveries."""
        for task in self._tasks:
            task.cancel()
        self.topics.clear()
        self.dead_letters.clear()
        self.policy = RetryPolicy(scale=self.default_scale)

    async def close(self) -> None:
        """Cancel deliveries and close the HTTP session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
