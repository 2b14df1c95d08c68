"""The ingest benchmarks' load: POSTs of valid notifications, timed one by one, and what they stored."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devtools.messages import receive_json
from shared.clock import utcnow
from shared.notifications import Envelope, check_items
from shared.storage import queue_client

from .harness import NOTIFICATIONS_QUEUE
from .phases import REQUEST_HEADER

# Envelope sources of the renew timer's own sync requests, which share the notifications queue.
TIMER = ("renew", "sweep")


@dataclass(frozen=True)
class Level:
    """One run of ``requests`` POSTs by ``senders`` concurrent senders."""

    senders: int
    batch: int
    requests: int
    seconds: float
    latencies: list[float]
    failures: int
    tagged: dict[str, float] = field(default_factory=dict)  # request id -> latency, when tagged

    @property
    def posts_per_second(self) -> float:
        """Accepted requests per second."""
        return (self.requests - self.failures) / self.seconds

    @property
    def notifications_per_second(self) -> float:
        """Accepted notifications per second."""
        return self.posts_per_second * self.batch


def notification(sub: dict[str, Any]) -> dict[str, Any]:
    """A valid notification for ``sub``, shaped as the simulator (and OneDrive) sends one."""
    return {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "changeType": "updated",
        "resource": sub["resource"],
        "clientState": sub["clientState"],
        "tenantId": "11111111-1111-1111-1111-111111111111",
    }


def queued_text(item: dict[str, Any], batch: int) -> str:
    """The queue message the app writes for a batch: the baseline sends the same bytes."""
    verdict = check_items([item] * batch, lambda _sid: item["clientState"], lifecycle=False)
    return Envelope("notifications", utcnow(), verdict.accepted).to_json()


async def raw_enqueue(connection: str, text: str, count: int) -> float:
    """Messages per second of sequential send_message calls from this process (after a warm-up)."""
    async with queue_client(connection, "bench-raw") as client:
        await client.create_queue()
        for _ in range(max(count // 20, 20)):
            await client.send_message(text)
        started = time.perf_counter()
        for _ in range(count):
            await client.send_message(text)
        seconds = time.perf_counter() - started
        await client.delete_queue()
    return count / seconds


async def post_level(
    url: str, body: bytes | list[bytes], senders: int, requests: int, batch: int, tag: str = ""
) -> Level:
    """``requests`` POSTs shared among ``senders`` workers, each timed on its own (bodies taken in turn).

    With a ``tag``, each request carries an id (``REQUEST_HEADER``) and its time is kept by id.
    """
    latencies: list[float] = []
    tagged: dict[str, float] = {}
    failures = 0
    left = requests
    bodies = itertools.cycle(body if isinstance(body, list) else [body])
    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def sender() -> None:
            nonlocal left, failures
            while left > 0:
                left -= 1
                headers = {"Content-Type": "application/json"}
                if tag:
                    headers[REQUEST_HEADER] = request_id = f"{tag}-{left}"
                started = time.perf_counter()
                async with session.post(url, data=next(bodies), headers=headers) as response:
                    await response.read()
                    latencies.append(took := time.perf_counter() - started)
                    failures += response.status != 202
                if tag:
                    tagged[request_id] = took

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        seconds = time.perf_counter() - started
    return Level(senders, batch, requests, seconds, latencies, failures, tagged)


async def take_stored(connection: str, limit: int) -> tuple[int, int]:
    """The HTTP path's messages on the notifications queue and the items they hold; the queue is left empty.

    Each level starts on an empty queue, as its baseline does: Azurite's receives and deletes
    scan the whole queue, so a backlog slows them and the emulator, not the app, is measured.
    """
    stored = [
        m
        for m in await receive_json(connection, NOTIFICATIONS_QUEUE, delete=False, limit=limit)
        if m.get("source") not in TIMER
    ]
    async with queue_client(connection, NOTIFICATIONS_QUEUE) as client:
        await client.clear_messages()
    return len(stored), sum(len(m["value"]) for m in stored)
