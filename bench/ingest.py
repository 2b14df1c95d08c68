"""Ingest: POST /api/notifications throughput and latency against raw queue writes to Azurite."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from devtools.messages import receive_json
from devtools.simclient import SimControl
from devtools.stack import DEMO_DRIVE
from shared.clock import utcnow
from shared.notifications import Envelope, check_items
from shared.storage import queue_client, table_client

from .harness import NOTIFICATIONS_QUEUE, PROCESS_DISABLED, running_stack, subscribe_via_host
from .report import Row, ms, percentile, rate, ratio, say

NAME = "ingest"
LEVELS = (1, 8, 32)
SHAPES = (1, 10)  # notifications per POST: one, and a batch as Graph sends under load
P99_GOAL = 0.100
# The renew timer runs only when the benchmark calls it: a tick of its own during a level would
# reconcile the 10,000 seeded records, which no desired entry names, deleting them beside the POSTs.
NO_TICK = "0 0 0 1 1 *"
# Envelope sources of the renew timer's own sync requests, which share the notifications queue.
TIMER = ("renew", "sweep")
SEEDED = 10_000  # stored subscriptions for the many-subscriptions figure
SEEDED_SAMPLE = 500  # of which the POSTs name these, each in turn
SINGLE_GOAL = 0.80  # of the raw enqueue rate


@dataclass(frozen=True)
class Level:
    """One run of ``requests`` POSTs by ``senders`` concurrent senders."""

    senders: int
    batch: int
    requests: int
    seconds: float
    latencies: list[float]
    failures: int

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


async def seed_subscriptions(connection: str, count: int) -> dict[str, str]:
    """Store ``count`` active subscription records as the renewer would; return id -> clientState."""
    from shared.services import SUBSCRIPTIONS_TABLE
    from shared.stores.subscriptions import ACTIVE, SubscriptionRecord, SubscriptionStore

    seeded = {str(uuid.uuid4()): secrets.token_urlsafe(32) for _ in range(count)}
    now = datetime.now(UTC)
    gate = asyncio.Semaphore(32)
    async with table_client(connection, SUBSCRIPTIONS_TABLE) as client:
        store = SubscriptionStore(client)

        async def save(n: int, sid: str, secret: str) -> None:
            record = SubscriptionRecord(
                f"bench:{n}|updated", f"drives/bench{n}/root", "updated", secret, ACTIVE, now, sid
            )
            async with gate:
                await store.save(record)

        await asyncio.gather(*(save(n, sid, secret) for n, (sid, secret) in enumerate(seeded.items())))
    return seeded


async def post_level(url: str, body: bytes | list[bytes], senders: int, requests: int, batch: int) -> Level:
    """``requests`` POSTs shared among ``senders`` workers, each timed on its own (bodies taken in turn)."""
    latencies: list[float] = []
    failures = 0
    left = requests
    bodies = itertools.cycle(body if isinstance(body, list) else [body])
    connector = aiohttp.TCPConnector(limit=senders)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def sender() -> None:
            nonlocal left, failures
            while left > 0:
                left -= 1
                started = time.perf_counter()
                async with session.post(url, data=next(bodies), headers=headers) as response:
                    await response.read()
                    latencies.append(time.perf_counter() - started)
                    failures += response.status != 202

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        seconds = time.perf_counter() - started
    return Level(senders, batch, requests, seconds, latencies, failures)


async def run(quick: bool) -> list[Row]:
    """Every shape at every concurrency level, then the raw baseline, on one stack."""
    requests = 400 if quick else 2000
    rows: list[Row] = []
    async with (
        running_stack(NAME, extra_env={**PROCESS_DISABLED, "RENEW_SCHEDULE": NO_TICK}) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        await control.create_drive(DEMO_DRIVE)
        sub = (await subscribe_via_host(stack, control, 1))[0]
        url = f"{stack.base_url}/api/notifications"
        connection = stack.azurite.connection_string
        item = notification(sub)
        # Warm-up: the host's first requests build the storage clients and load the secrets.
        await post_level(url, json.dumps({"value": [item]}).encode(), 8, 200, 1)
        await receive_json(connection, NOTIFICATIONS_QUEUE)  # drop the warm-up's messages
        results: dict[int, list[Level]] = {}
        for batch in SHAPES:
            body = json.dumps({"value": [item] * batch}).encode()
            for senders in LEVELS:
                level = await post_level(url, body, senders, requests, batch)
                results.setdefault(batch, []).append(level)
                say(
                    f"  ingest {batch:>2}/POST x{senders:<2} senders: {level.notifications_per_second:8.0f} notif/s, "
                    f"p50 {ms(percentile(level.latencies, 50))}, p99 {ms(percentile(level.latencies, 99))}, "
                    f"{level.failures} not 202"
                )
        # Every accepted notification must be on the queue, in at most one message per POST. The
        # renew timer's own sync requests (source "renew" or "sweep") may sit there too: not counted.
        stored = [
            m for m in await receive_json(connection, NOTIFICATIONS_QUEUE, delete=False) if m.get("source") not in TIMER
        ]
        messages, items = len(stored), sum(len(m["value"]) for m in stored)
        posts = len(SHAPES) * len(LEVELS) * requests
        notifications = sum(len(LEVELS) * requests * batch for batch in SHAPES)
        many = await many_subscriptions(connection, url, sub, requests)
        raw = {batch: await raw_enqueue(connection, queued_text(item, batch), requests) for batch in SHAPES}
        for batch, text in ((b, queued_text(item, b)) for b in SHAPES):
            say(f"  raw send_message, {len(text)} B JSON ({batch}/msg): {raw[batch]:.0f} msg/s")
    rows.append(
        Row(
            NAME,
            "notifications stored / accepted",
            f"{items} / {notifications}",
            goal="equal",
            met=items == notifications,
        )
    )
    rows.append(
        Row(
            NAME, "queue messages written / POSTs", f"{messages} / {posts}", goal="<= 1 per POST", met=messages <= posts
        )
    )
    rows.append(many)
    for batch in SHAPES:
        shape = "1 notif/POST" if batch == 1 else f"{batch} notif/POST"
        rows.append(Row(NAME, f"raw send_message ({shape} size)", rate(raw[batch], "msg/s")))
        for level in results[batch]:
            p99 = percentile(level.latencies, 99)
            at_goal_level = level.senders == LEVELS[-1]
            rows.append(
                Row(
                    NAME,
                    f"{shape}, {level.senders} senders",
                    f"{rate(level.notifications_per_second, 'notif/s')}; p50 {ms(percentile(level.latencies, 50))}"
                    f", p99 {ms(p99)}",
                    rate(raw[batch], "msg/s"),
                    ratio(level.notifications_per_second, raw[batch]),
                    f"p99 < {ms(P99_GOAL)}" if at_goal_level else "",
                    p99 < P99_GOAL if at_goal_level else None,
                )
            )
        best = max(results[batch], key=lambda lv: lv.notifications_per_second)
        target = SINGLE_GOAL if batch == 1 else 1.0
        rows.append(
            Row(
                NAME,
                f"{shape}: best throughput ({best.senders} senders)",
                rate(best.notifications_per_second, "notif/s"),
                rate(raw[batch], "msg/s"),
                ratio(best.notifications_per_second, raw[batch]),
                f">= {target:.0%} of raw" if batch == 1 else "> raw",
                best.notifications_per_second >= target * raw[batch]
                if batch == 1
                else best.notifications_per_second > raw[batch],
            )
        )
    return rows


async def many_subscriptions(connection: str, url: str, sub: dict[str, Any], requests: int) -> Row:
    """The 32-sender p99 with SEEDED subscriptions stored, the POSTs naming SEEDED_SAMPLE of them in turn.

    The host met them after its cache was loaded, so each is first found by a point read (in the
    warm-up), then served from the cache, as happens once a burst of subscriptions is created.
    """
    started = time.perf_counter()
    seeded = await seed_subscriptions(connection, SEEDED)
    say(f"  seeded {SEEDED} subscriptions in {time.perf_counter() - started:.1f} s")
    bodies = [
        json.dumps({"value": [notification(sub | {"id": sid, "clientState": secret})]}).encode()
        for sid, secret in itertools.islice(seeded.items(), SEEDED_SAMPLE)
    ]
    await post_level(url, bodies, 8, SEEDED_SAMPLE, 1)  # warm-up: each sampled id once
    await receive_json(connection, NOTIFICATIONS_QUEUE)
    senders = LEVELS[-1]
    level = await post_level(url, bodies, senders, requests, 1)
    stored = sum(
        len(m["value"]) for m in await receive_json(connection, NOTIFICATIONS_QUEUE) if m.get("source") not in TIMER
    )
    p50, p99 = percentile(level.latencies, 50), percentile(level.latencies, 99)
    say(
        f"  ingest  1/POST x{senders} senders, {SEEDED} subscriptions: {level.notifications_per_second:8.0f} notif/s, "
        f"p50 {ms(p50)}, p99 {ms(p99)}, {level.failures} not 202, {stored} stored"
    )
    accepted = level.requests - level.failures
    return Row(
        NAME,
        f"1 notif/POST, {senders} senders, {SEEDED:,} subscriptions",
        f"{rate(level.notifications_per_second, 'notif/s')}; p50 {ms(p50)}, p99 {ms(p99)}"
        f"; {stored} / {accepted} stored",
        goal=f"p99 < {ms(P99_GOAL)}, all stored",
        met=p99 < P99_GOAL and level.failures == 0 and stored == accepted,
    )
