"""The ingest benchmarks' load: POSTs of valid notifications, timed one by one, and what they stored.

Every level runs on a stack of its own, and its baseline on an Azurite of its own, and
nothing is ever deleted from a queue being measured: Azurite's queue GC, every 60 s,
costs time that grows with the square of the messages deleted since the last one (4 s
of its single thread for 2,000 messages, 17 s for 4,000, 92 s for 8,000 on an idle
box), and it answers nothing meanwhile. A level measured after another level's
messages were deleted measured that sweep: raw send_message fell to 33 msg/s, and
POSTs got 503 after the 2 s write deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devtools.simclient import SimControl
from devtools.stack import DEMO_DRIVE, LocalStack
from shared.clock import utcnow
from shared.model.notifications import Envelope, check_items
from shared.stores.clients import queue_client

from .harness import NOTIFICATIONS_QUEUE, PROCESS_DISABLED, running_stack, subscribe_via_host
from .phases import REQUEST_HEADER, start_timed_host

# Envelope sources of the renew timer's own sync requests, which share the notifications queue.
TIMER = ("renew", "sweep")
# The renew timer runs only when the benchmark calls it: a tick of its own during a level would
# reconcile the 10,000 seeded records, which no desired entry names, deleting them beside the POSTs.
NO_TICK = "0 0 0 1 1 *"
ENV = {**PROCESS_DISABLED, "RENEW_SCHEDULE": NO_TICK}
# A message counted is hidden this long, never deleted (see the module's docstring).
HIDDEN_SECONDS = 3600


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


@dataclass(frozen=True)
class Target:
    """A stack ready for one level: where to POST, and a valid notification for its subscription."""

    stack: LocalStack
    url: str
    item: dict[str, Any]

    @property
    def connection(self) -> str:
        """The stack's Azurite."""
        return self.stack.azurite.connection_string


@contextlib.asynccontextmanager
async def fresh_target(name: str, timed: Path | None = None) -> AsyncIterator[Target]:
    """A stack of its own with one subscription and a warmed-up host; with ``timed``, the timed host (phases.py).

    The warm-up's messages are hidden, not deleted, so the level starts with nothing visible.
    """
    async with (
        running_stack(name, extra_env=ENV, with_host=timed is None) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        if timed is not None:
            start_timed_host(stack, timed)
        await control.create_drive(DEMO_DRIVE)
        sub = (await subscribe_via_host(stack, control, 1))[0]
        target = Target(stack, f"{stack.base_url}/api/notifications", notification(sub))
        # The host's first requests build the storage clients and read the secret.
        await post_level(target.url, json.dumps({"value": [target.item]}).encode(), 8, 200, 1)
        await take_stored(target.connection, 10_000)
        yield target


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
    """The HTTP path's visible messages on the notifications queue and the items they hold, hidden once counted."""
    messages = items = 0
    async with queue_client(connection, NOTIFICATIONS_QUEUE) as client:
        while messages < limit:
            batch = [
                m
                async for m in client.receive_messages(
                    messages_per_page=32, max_messages=32, visibility_timeout=HIDDEN_SECONDS
                )
            ]
            if not batch:
                break
            for message in batch:
                envelope = json.loads(message.content)
                if envelope.get("source") not in TIMER:
                    messages, items = messages + 1, items + len(envelope["value"])
    return messages, items
