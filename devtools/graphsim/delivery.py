"""Change- and lifecycle-notification delivery with Graph's retry behaviour.

One sender task per target URL takes up to ``delivery_max_batch`` queued notifications
(possibly for several subscriptions, as Graph combines them) and POSTs
``{"value": [...]}``.  A non-2xx answer, a connection error or a timeout keeps the batch
and retries it with exponential back-off (base doubling, capped, with jitter) until
``retry_for_seconds`` have passed since its first attempt; then the batch is dropped, as
Graph drops notifications after 4 hours.  ``duplicates`` > 1 re-sends each delivered
batch, because Graph delivers at least once and duplicates are normal.

Drive notifications go without ``changeType``, as OneDrive's documented example shows
them (onedrive-api-docs, docs/rest-api/concepts/using-webhooks.md): a drive subscription
allows only ``updated``, so the receiver must read a missing one as that.

Outage faults: ``drop`` discards new change notifications for every URL (counted as
dropped), as Graph does for an endpoint it considers slow; lifecycle notifications still
go, since they are how Graph reports such losses.  ``delay_seconds`` holds each batch
that long before its first attempt, for late delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp

from .config import SimConfig
from .eventgrid import is_eventgrid
from .eventgrid_delivery import EventGridChannel, RetryPolicy

log = logging.getLogger("graphsim.delivery")
# A drive's root as a subscription names it: drives/{id}/root, users/{id}/drive/root, me/drive/root, ...
_DRIVE_ROOT = re.compile(r"(?:^|/)drive(?:s/[^/]+)?/root$")


def as_onedrive_sends(item: dict[str, Any]) -> dict[str, Any]:
    """A drive change notification without its changeType, as in OneDrive's example; others unchanged."""
    resource = str(item.get("resource") or "").strip("/")
    if "lifecycleEvent" in item or item.get("changeType") != "updated" or not _DRIVE_ROOT.search(resource):
        return item
    return {key: value for key, value in item.items() if key != "changeType"}


class DeliveryStats:
    """Counters exposed by the control API."""

    def __init__(self) -> None:
        self.attempts = 0
        self.successes = 0
        self.failures: Counter[str] = Counter()
        self.items_delivered = 0
        self.items_dropped = 0
        self.duplicates_sent = 0
        self.lifecycle_delivered = 0

    def as_json(self, pending: int) -> dict[str, Any]:
        """Snapshot for ``GET /_sim/stats``."""
        return {
            "attempts": self.attempts,
            "successes": self.successes,
            "failures": dict(self.failures),
            "itemsDelivered": self.items_delivered,
            "itemsDropped": self.items_dropped,
            "duplicatesSent": self.duplicates_sent,
            "lifecycleDelivered": self.lifecycle_delivered,
            "pending": pending,
        }


class Deliverer:
    """Queues per URL and one sender task for each."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.duplicates = max(1, config.duplicates)
        self.drop = False
        self.delay_seconds = 0.0
        self.stats = DeliveryStats()
        self.queues: dict[str, deque[dict[str, Any]]] = {}
        self.in_flight: dict[str, int] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._resume = asyncio.Event()
        self._resume.set()
        self._session: aiohttp.ClientSession | None = None
        # The body of one batch: rich notifications add validationTokens (rich.py RichDelivery.shape).
        self.shape: Callable[[list[dict[str, Any]]], dict[str, Any]] = lambda batch: {"value": batch}
        # EventGrid: notification URLs go to partner topics instead (eventgrid_delivery.py).
        scale = config.eventgrid_retry_scale
        self.eventgrid = EventGridChannel(policy=RetryPolicy(scale=scale), owner=self, default_scale=scale)

    @property
    def paused(self) -> bool:
        """Whether delivery is held back (items keep queuing)."""
        return not self._resume.is_set()

    def set_paused(self, paused: bool) -> None:
        """Hold or release all senders."""
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    async def resumed(self) -> None:
        """Return once delivery is not paused."""
        await self._resume.wait()

    def pending(self) -> int:
        """Items queued or in flight, Event Grid's included."""
        webhooks = sum(len(q) for q in self.queues.values()) + sum(self.in_flight.values())
        return webhooks + self.eventgrid.pending()

    def enqueue(self, url: str, items: list[dict[str, Any]], tenant_id: str = "", application_id: str = "") -> None:
        """Queue notifications for ``url`` and make sure its sender runs; ``EventGrid:`` URLs publish to a topic."""
        if self.drop:
            kept = [n for n in items if "lifecycleEvent" in n]
            self.stats.items_dropped += len(items) - len(kept)
            items = kept
        if not items:
            return
        if is_eventgrid(url):
            self.eventgrid.publish(url, items, tenant_id, application_id or self.config.client_id)
            return
        self.queues.setdefault(url, deque()).extend(as_onedrive_sends(item) for item in items)
        self._wakeups.setdefault(url, asyncio.Event()).set()
        task = self._tasks.get(url)
        if task is None or task.done():
            self._tasks[url] = asyncio.get_running_loop().create_task(self._sender(url))

    def clear(self) -> None:
        """Forget everything queued and the outage faults (reset)."""
        for q in self.queues.values():
            q.clear()
        self.drop = False
        self.delay_seconds = 0.0
        self.eventgrid.clear()

    async def close(self) -> None:
        """Stop senders and the HTTP session."""
        await self.eventgrid.close()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=False))
        return self._session

    async def _sender(self, url: str) -> None:
        queue, wake = self.queues[url], self._wakeups[url]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            await self._resume.wait()
            batch = [queue.popleft() for _ in range(min(len(queue), self.config.delivery_max_batch))]
            self.in_flight[url] = len(batch)
            try:
                if self.delay_seconds > 0:
                    await asyncio.sleep(self.delay_seconds)
                    await self._resume.wait()
                await self._deliver(url, batch)
            finally:
                self.in_flight[url] = 0

    async def _deliver(self, url: str, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(self.shape(batch)).encode()
        first = time.monotonic()
        delay = self.config.retry_base_seconds
        while not await self._post(url, body):
            if time.monotonic() - first + delay > self.config.retry_for_seconds:
                self.stats.items_dropped += len(batch)
                log.warning("dropping %d notifications for %s after retrying", len(batch), _host(url))
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.retry_max_seconds)
            await self._resume.wait()
        self.stats.items_delivered += len(batch)
        self.stats.lifecycle_delivered += sum(1 for n in batch if "lifecycleEvent" in n)
        for _ in range(self.duplicates - 1):
            if await self._post(url, body):
                self.stats.duplicates_sent += 1

    async def _post(self, url: str, body: bytes) -> bool:
        self.stats.attempts += 1
        try:
            async with self._http().post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.config.delivery_timeout_seconds),
                allow_redirects=False,
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                if ok:
                    self.stats.successes += 1
                else:
                    self.stats.failures[str(resp.status)] += 1
                return ok
        except TimeoutError:
            self.stats.failures["timeout"] += 1
        except aiohttp.ClientError:
            self.stats.failures["connection"] += 1
        return False


def _host(url: str) -> str:
    return url.split("?", 1)[0]
