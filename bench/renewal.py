"""Renewal: the reconciler's bounded concurrency against renewing one by one, under Graph's write limit.

The simulator adds 200 ms to every subscription write, as real Graph takes
about 100-400 ms; the reconciler runs in this process (writes.py).

A second stack then runs the renew timer's whole tick (reconcile, then the
safety sweep) on 10,000 subscriptions (``--quick``: 300): once creating them,
once renewing them, against the floor Graph's write limit sets.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from shared.clock import utcnow
from shared.model.names import SUBSCRIPTIONS_TABLE
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.reconcile.budget import GRAPH_SUBSCRIPTION_WRITES
from shared.reconcile.budget import GRAPH_WINDOW_SECONDS as WINDOW_SECONDS
from shared.reconcile.reconciler import CONCURRENCY, LIST_REQUESTS, LIST_WINDOW_SECONDS
from shared.stores.clients import table_client
from shared.stores.subscriptions import SubscriptionStore

from .harness import drive_subscriptions, make_drives
from .report import Row, rate, say
from .writes import GRAPH_LIMIT, WRITE_LATENCY_MS, WriteLog, floor_seconds, reconciler_under_limit

NAME = "renewal"
SPEEDUP_GOAL = 8.0
# Past half their lifetime (about 14.7 days for a drive), records are due for renewal.
RENEWAL_SHIFT = timedelta(days=15)


async def active_records(connection: str) -> list[SubscriptionRecord]:
    """The subscription records the reconciler stored, active ones only."""
    async with table_client(connection, SUBSCRIPTIONS_TABLE) as client:
        return [r for r in await SubscriptionStore(client).list() if r.status == ACTIVE]


async def settle(needed: bool) -> None:
    """Let the simulator's 20 s window and the reconciler's budget empty, so phases do not share a window."""
    if needed:
        say(f"  waiting {WINDOW_SECONDS + 1} s for the write window to clear")
        await asyncio.sleep(WINDOW_SECONDS + 1)


async def run(quick: bool) -> list[Row]:
    """The speed-up of concurrent renewal, then whole renew ticks at scale."""
    return await speedup(quick) + await ticks_at_scale(300 if quick else 10_000)


async def ticks_at_scale(count: int) -> list[Row]:
    """One renew tick (reconcile, then sweep) creating ``count`` subscriptions, one renewing them all."""
    name = f"tick x{count}"
    drives = [f"tick-{n:05d}" for n in range(count)]
    log = WriteLog()
    # Every subscription is due at each sweep: the worst case for the sweep's reads and messages.
    options: dict[str, Any] = {"subscriptions": drive_subscriptions(drives)}
    options["extra_env"] = {"SWEEP_AFTER_SECONDS": "0"}
    seed = lambda control: make_drives(control, {drive: {} for drive in drives})  # noqa: E731
    async with reconciler_under_limit(NAME, log, seed, **options) as (_, control, worker):
        reconciler, desired = worker.reconciler, worker.settings.subscriptions
        assert reconciler is not None  # single mode: Graph's one reconciler
        t0 = time.monotonic()
        created = await reconciler.reconcile(desired)
        t1 = time.monotonic()
        first_sweep = await worker.sweeper.sweep()
        t2 = time.monotonic()
        say(f"  tick x{count}: created {created.created} (failed {created.failed}) in {t1 - t0:.1f} s, "
            f"swept {first_sweep.due} in {t2 - t1:.1f} s")  # fmt: skip
        await settle(True)

        await control.advance_clock(RENEWAL_SHIFT.total_seconds())
        t3 = time.monotonic()
        renewed = await reconciler.reconcile(desired, utcnow() + RENEWAL_SHIFT)
        t4 = time.monotonic()
        second_sweep = await worker.sweeper.sweep()
        t5 = time.monotonic()
        say(f"  tick x{count}: renewed {renewed.renewed} (failed {renewed.failed}) in {t4 - t3:.1f} s, "
            f"swept {second_sweep.due} in {t5 - t4:.1f} s")  # fmt: skip
        await asyncio.sleep(0.5)

        # What an hourly tick adds: Graph's whole list, page by page within the list budget.
        t6 = time.monotonic()
        listed = await reconciler._list_remote()
        t7 = time.monotonic()
        say(f"  listed {len(listed)} subscriptions in {t7 - t6:.1f} s")

    floor = floor_seconds(count, WRITE_LATENCY_MS / 1000, CONCURRENCY)
    rows = []
    for phase, report, done, start, end, sweep_start, sweep_end in (
        ("create", created, created.created, t0, t1, t1, t2),
        ("renew", renewed, renewed.renewed, t3, t4, t4, t5),
    ):
        writes, throttled = log.counts(start - 0.5, end + 0.5)
        peak = log.peak(start, end)
        tick = end - start
        sweep = first_sweep if phase == "create" else second_sweep
        rows += [
            Row(NAME, f"{name}: {phase} via reconcile ({WRITE_LATENCY_MS} ms writes)",
                f"{tick:.1f} s, {done} ok, {report.failed} failed, {writes} writes",
                f"floor {floor:.0f} s", f"{tick / floor:.2f}x floor", *bound(tick, floor)),
            Row(NAME, f"  {phase}: throttled (429) / peak writes per 20 s (sampled)", f"{throttled} / {peak}",
                goal=f"0 / <= {GRAPH_LIMIT}", met=throttled == 0 and peak <= GRAPH_LIMIT),
            Row(NAME, f"  then sweep {sweep.checked} (all due: SWEEP_AFTER_SECONDS=0)",
                f"{sweep_end - sweep_start:.1f} s, {sweep.due} due, {sweep.messages} messages",
                goal="< 60 s", met=sweep_end - sweep_start < 60),
        ]  # fmt: skip
    pages = -(-len(listed) // 100)
    # Paced at LIST_REQUESTS per window: the first window's pages go at once, each further one waits a window.
    least = (-(-pages // LIST_REQUESTS) - 1) * LIST_WINDOW_SECONDS
    rows.append(
        Row(NAME, f"{name}: list Graph's {len(listed)} ({pages} pages, once an hour)", f"{t7 - t6:.1f} s",
            f"least {least:.0f} s", goal=f"all {count}, <= {LIST_REQUESTS} pages per 20 s",
            met=len(listed) == count and t7 - t6 >= least)
    )  # fmt: skip
    return rows


def bound(tick: float, floor: float) -> tuple[str, bool | None]:
    """Within a quarter of the floor, when the write limit is what binds (more writes than one window holds)."""
    if floor < 2 * WINDOW_SECONDS:
        return "", None
    return "<= 1.25x floor", tick <= 1.25 * floor


async def speedup(quick: bool) -> list[Row]:
    """Create N subscriptions with reconcile, renew them all with reconcile, then a subset one by one."""
    count, sequential = (200, 30) if quick else (1000, 100)
    drives = [f"ren-{n:04d}" for n in range(count)]
    # Phases are kept apart whenever two of them could together exceed one window's writes.
    spaced = count + sequential > GRAPH_SUBSCRIPTION_WRITES // 2
    log = WriteLog()
    seed = lambda control: make_drives(control, {drive: {} for drive in drives})  # noqa: E731
    subscriptions = drive_subscriptions(drives)
    async with reconciler_under_limit(NAME, log, seed, subscriptions=subscriptions) as (stack, control, worker):
        reconciler, desired = worker.reconciler, worker.settings.subscriptions
        assert reconciler is not None  # single mode: Graph's one reconciler
        t0 = time.monotonic()
        created = await reconciler.reconcile(desired)
        t1 = time.monotonic()
        await asyncio.sleep(0.5)
        say(f"  created {created.created} (failed {created.failed}) via reconcile in {t1 - t0:.1f} s")
        await settle(spaced)

        # Concurrent: the timer's own path, with the clock moved on so every record is due.
        await control.advance_clock(RENEWAL_SHIFT.total_seconds())
        t2 = time.monotonic()
        renewed = await reconciler.reconcile(desired, utcnow() + RENEWAL_SHIFT)
        t3 = time.monotonic()
        await asyncio.sleep(0.5)
        say(f"  renewed {renewed.renewed} (failed {renewed.failed}) via reconcile in {t3 - t2:.1f} s")
        await settle(spaced)

        subset = (await active_records(stack.azurite.connection_string))[:sequential]
        t4 = time.monotonic()
        for record in subset:
            await reconciler.renew(record, utcnow() + RENEWAL_SHIFT)
        t5 = time.monotonic()
        await asyncio.sleep(0.5)
        say(f"  renewed {len(subset)} one by one in {t5 - t4:.1f} s")

    create_writes, create_throttled = log.counts(t0 - 0.5, t1 + 0.5)
    renew_writes, renew_throttled = log.counts(t2 - 0.5, t3 + 0.5)
    _, single_throttled = log.counts(t4 - 0.5, t5 + 0.5)
    concurrent_rate = renewed.renewed / (t3 - t2)
    single_rate = len(subset) / (t5 - t4)
    speedup = concurrent_rate / single_rate
    floor = floor_seconds(count, WRITE_LATENCY_MS / 1000, CONCURRENCY)
    for text in (
        f"  peak writes per 20 s: creation {log.peak(t0, t1)}, renewal {log.peak(t2, t3)}; "
        f"throttled: creation {create_throttled}, renewal {renew_throttled}, one by one {single_throttled}",
        f"  least possible time for {count} writes at {CONCURRENCY} x {WRITE_LATENCY_MS} ms under {GRAPH_LIMIT}/20 s: "
        f"{floor:.1f} s, i.e. at most {count / floor / single_rate:.1f}x the one-by-one rate measured here",
    ):
        say(text)
    sim = f"sim write latency {WRITE_LATENCY_MS} ms"
    return [
        Row(NAME, f"create {count} via reconcile ({sim})",
            f"{t1 - t0:.1f} s, {created.created} ok, {created.failed} failed, {create_writes} writes"),
        Row(NAME, "  creation: throttled (429) / peak writes per 20 s (sampled)",
            f"{create_throttled} / {log.peak(t0, t1)}", goal=f"0 / <= {GRAPH_LIMIT}",
            met=create_throttled == 0 and log.peak(t0, t1) <= GRAPH_LIMIT),
        Row(NAME, f"renew {count} via reconcile (concurrency {CONCURRENCY})",
            f"{t3 - t2:.1f} s = {rate(concurrent_rate, 'subs/s')}; {renewed.failed} failed, {renew_writes} writes"),
        Row(NAME, f"renew {len(subset)} one by one (subset)", f"{t5 - t4:.1f} s = {rate(single_rate, 'subs/s')}"),
        Row(NAME, "renewal speed-up (per-subscription rate)", rate(concurrent_rate, "subs/s"),
            rate(single_rate, "subs/s"), f"{speedup:.2f}x", f">= {SPEEDUP_GOAL:.0f}x", speedup >= SPEEDUP_GOAL),
        Row(NAME, "  renewal: throttled (429) / peak writes per 20 s (sampled)",
            f"{renew_throttled} / {log.peak(t2, t3)}", goal=f"0 / <= {GRAPH_LIMIT}",
            met=renew_throttled == 0 and log.peak(t2, t3) <= GRAPH_LIMIT),
        Row(NAME, f"  floor for {count} writes under {GRAPH_LIMIT}/20 s", f"{floor:.1f} s",
            ratio=f"<= {count / floor / single_rate:.1f}x"),
    ]  # fmt: skip
