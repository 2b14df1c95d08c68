"""Ingest: POST /api/notifications throughput and latency against raw queue writes to Azurite."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime

from shared.stores.clients import table_client

from .baselines import raw_enqueue
from .breakdown import where_the_p99_goes
from .posts import Level, fresh_target, post_level, queued_text, take_stored
from .report import Row, ms, percentile, rate, ratio, say

NAME = "ingest"
LEVELS = (1, 8, 32)
SHAPES = (1, 10)  # notifications per POST: one, and a batch as Graph sends under load
P99_GOAL = 0.100
SEEDED = 10_000  # stored subscriptions for the many-subscriptions figure
SEEDED_SAMPLE = 500  # of which the POSTs name these, each in turn
SINGLE_GOAL = 0.80  # of the raw enqueue rate
# The baseline's message: what the HTTP path writes for a notification of this size.
EXAMPLE = {
    "subscriptionId": "63dc91f6-adca-4ac4-b584-f7dc237a2f22",
    "subscriptionExpirationDateTime": "2026-12-10T14:00:00.0000000Z",
    "changeType": "updated",
    "resource": "drives/demo-drive/root",
    "clientState": "x",
    "tenantId": "11111111-1111-1111-1111-111111111111",
}


async def seed_subscriptions(connection: str, count: int) -> dict[str, str]:
    """Store ``count`` active subscription records as the reconciler would; return id -> clientState."""
    from shared.model.names import SUBSCRIPTIONS_TABLE
    from shared.model.subscription import ACTIVE, SubscriptionRecord
    from shared.stores.subscriptions import SubscriptionStore

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


async def run(quick: bool) -> list[Row]:
    """Every shape at every concurrency level, each on a stack of its own after its baseline; then the phases."""
    requests = 400 if quick else 2000
    rows: list[Row] = []
    results: dict[int, list[tuple[Level, float]]] = {}
    messages = items = lost = 0
    for batch in SHAPES:
        for senders in LEVELS:
            # The baseline just before its level, on an Azurite of its own, as the level runs on a fresh one.
            raw = await raw_enqueue(queued_text(EXAMPLE, batch), requests)
            async with fresh_target(f"{NAME}-{batch}x{senders}") as target:
                body = json.dumps({"value": [target.item] * batch}).encode()
                level = await post_level(target.url, body, senders, requests, batch)
                written, held = await take_stored(target.connection, 2 * requests + 100)
            messages, items = messages + written, items + held
            # A POST answered 5xx may have been stored anyway (a write that finished after the deadline):
            # Graph sends it again, a duplicate the promise allows. Fewer than accepted is a loss.
            lost += max(0, (level.requests - level.failures) * batch - held)
            results.setdefault(batch, []).append((level, raw))
            say(
                f"  ingest {batch:>2}/POST x{senders:<2} senders: {level.notifications_per_second:8.0f} notif/s, "
                f"p50 {ms(percentile(level.latencies, 50))}, p99 {ms(percentile(level.latencies, 99))}, "
                f"{level.failures} not 202; raw send_message just before: {raw:.0f} msg/s; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
    posts = len(SHAPES) * len(LEVELS) * requests
    sent = sum(len(LEVELS) * requests * batch for batch in SHAPES)
    accepted = sum((lv.requests - lv.failures) * lv.batch for levels in results.values() for lv, _ in levels)
    refused = sum(lv.failures for levels in results.values() for lv, _ in levels)
    many = await many_subscriptions(requests)
    rows.append(
        Row(
            NAME,
            "notifications stored / accepted (sent)",
            f"{items} / {accepted} ({sent} sent; {refused} POSTs not 202)",
            goal="none lost, <= sent",
            met=not lost and items <= sent,
        )
    )
    rows.append(
        Row(
            NAME, "queue messages written / POSTs", f"{messages} / {posts}", goal="<= 1 per POST", met=messages <= posts
        )
    )
    rows.append(many)
    for batch in SHAPES:
        rows += shape_rows(batch, results[batch])
    rows += await where_the_p99_goes(NAME, requests, LEVELS[-1], SHAPES, P99_GOAL)
    return rows


def shape_rows(batch: int, results: list[tuple[Level, float]]) -> list[Row]:
    """One shape's rows: each level against the raw rate measured just before it, and the best."""
    shape = "1 notif/POST" if batch == 1 else f"{batch} notif/POST"
    raws = [raw for _, raw in results]
    rows = [
        Row(
            NAME,
            f"raw send_message ({shape} size), before each level",
            f"{rate(statistics.median(raws), 'msg/s')} median ({min(raws):,.0f} to {max(raws):,.0f})",
        )
    ]
    for level, raw in results:
        p99 = percentile(level.latencies, 99)
        at_goal_level = level.senders == LEVELS[-1]
        rows.append(
            Row(
                NAME,
                f"{shape}, {level.senders} senders",
                f"{rate(level.notifications_per_second, 'notif/s')}; p50 {ms(percentile(level.latencies, 50))}"
                f", p99 {ms(p99)}",
                rate(raw, "msg/s"),
                ratio(level.notifications_per_second, raw),
                f"p99 < {ms(P99_GOAL)}" if at_goal_level else "",
                p99 < P99_GOAL if at_goal_level else None,
            )
        )
    best, raw = max(results, key=lambda result: result[0].notifications_per_second)
    target = SINGLE_GOAL if batch == 1 else 1.0
    rows.append(
        Row(
            NAME,
            f"{shape}: best throughput ({best.senders} senders)",
            rate(best.notifications_per_second, "notif/s"),
            rate(raw, "msg/s"),
            ratio(best.notifications_per_second, raw),
            f">= {target:.0%} of raw" if batch == 1 else "> raw",
            best.notifications_per_second >= target * raw if batch == 1 else best.notifications_per_second > raw,
        )
    )
    return rows


async def many_subscriptions(requests: int) -> Row:
    """The 32-sender p99 with SEEDED subscriptions stored, the POSTs naming SEEDED_SAMPLE of them in turn.

    The host met them after its cache was loaded, so each is first found by a point read (in the
    warm-up), then served from the cache, as happens once a burst of subscriptions is created.
    """
    async with fresh_target(f"{NAME}-many") as target:
        started = time.perf_counter()
        seeded = await seed_subscriptions(target.connection, SEEDED)
        say(f"  seeded {SEEDED} subscriptions in {time.perf_counter() - started:.1f} s")
        bodies = [
            json.dumps({"value": [target.item | {"subscriptionId": sid, "clientState": secret}]}).encode()
            for sid, secret in itertools.islice(seeded.items(), SEEDED_SAMPLE)
        ]
        await post_level(target.url, bodies, 8, SEEDED_SAMPLE, 1)  # warm-up: each sampled id once
        await take_stored(target.connection, 2 * SEEDED_SAMPLE + 100)
        senders = LEVELS[-1]
        level = await post_level(target.url, bodies, senders, requests, 1)
        _, stored = await take_stored(target.connection, 2 * requests + 100)
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
        goal=f"p99 < {ms(P99_GOAL)}, none lost",
        met=p99 < P99_GOAL and accepted <= stored <= level.requests,
    )
