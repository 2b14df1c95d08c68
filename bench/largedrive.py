"""A large drive: the first full pass over it, its memory, its throughput, and a kill halfway through.

Each size gets a fresh stack with INITIAL_SYNC=full, so the subscription's first pass
reports every item of the drive as created. The drive is filled before subscribing;
the host's resident memory (the one process that runs every function) is sampled
from idle to the last event. graph-changes lives in an Azurite of its own
(CHANGES_STORAGE); up to READ_UP_TO files it is drained as events arrive, counting
them per item, above that its messages are counted. The baseline is what the pass
must write at the least, timed against the same Azurites: one queue message per item
and one table transaction per 100 items.
"""

from __future__ import annotations

import asyncio
import os
import time

from devtools.simclient import SimControl

from .baselines import raw_send_rate, raw_transaction_rate
from .counters import EventCounter, QueueCounter
from .harness import own_azurite, running_stack, subscribe_via_host, wait_until
from .memory import RssSampler, host_pid, rss_bytes
from .pass_figures import HOLD_SECONDS, PAGE_SIZE, SENDERS, TRANSACTIONS_AT_ONCE, Pass, mb, rows
from .pass_figures import NAME as NAME  # the benchmark's name (bench/__main__.py)
from .report import Row, say

DRIVE = "large-drive"
# Runs up to this size read every event (per-item distinctness); larger ones count the queue.
READ_UP_TO = 5_000
QUIET_AFTER = 5.0  # seconds without events after the last expected one: late repeats would have come


async def first_pass(size: int, kill: bool) -> tuple[Pass, tuple[float, float] | None]:
    """One fresh stack, one drive of ``size`` files, its full first pass; the raw rates after it unless ``kill``."""
    # graph-changes in an Azurite of its own (CHANGES_STORAGE): Azurite keeps every queue's
    # messages in one list that each receive scans, so a backlog of events there would slow
    # the app's own queue reads (a receive on an empty queue: 2 ms beside 50 messages, 177 ms
    # beside 10,000, 5.8 s beside 30,000), which Azure Storage does not do.
    async with own_azurite() as events:
        env = {
            "INITIAL_SYNC": "full",
            "LOCALHOST_MESSAGE_HOLD_SECONDS": str(HOLD_SECONDS),
            "CHANGES_STORAGE": events.connection_string,
        }
        return await _first_pass(size, kill, env, events.connection_string)


async def _first_pass(
    size: int, kill: bool, env: dict[str, str], connection: str
) -> tuple[Pass, tuple[float, float] | None]:
    async with (
        running_stack(
            NAME,
            subscriptions=[{"resource": f"drives/{DRIVE}/root"}],
            extra_env=env,
            sim_options=("--page-size", str(PAGE_SIZE)),
        ) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        await control.create_drive(DRIVE)
        made = await control.generate_items(DRIVE, size)
        expected = made["count"] + made["folders"] + 1
        await asyncio.sleep(2)  # let the host settle after its start-up before reading its idle memory
        idle = rss_bytes(host_pid(stack))
        gap = 0.0
        counter: EventCounter | QueueCounter = (
            EventCounter(connection) if size <= READ_UP_TO else QueueCounter(connection)
        )
        async with counter, RssSampler(stack) as sampler:
            started = time.monotonic()
            await subscribe_via_host(stack, control, 1)
            limit = 300 + expected / 50  # far beyond any expected rate: a stalled pass ends the wait

            if kill:

                async def halfway() -> bool:
                    return bool(counter.total >= expected // 2)

                await wait_until(halfway, limit, "half of the events", every=0.05)
                killed_at = time.monotonic()
                await asyncio.to_thread(stack.host.kill)  # type: ignore[union-attr]
                say(f"  killed the host at {counter.total:,} events, {killed_at - started:.0f} s in")
                await asyncio.to_thread(stack.start_host)

            async def all_arrived() -> bool:
                return bool((counter.total if counter.distinct is None else counter.distinct) >= expected)

            await wait_until(all_arrived, limit, f"{expected:,} items' events", every=0.2)

            async def settled() -> bool:
                return counter.last_at is not None and time.monotonic() - counter.last_at >= QUIET_AFTER

            await wait_until(settled, 120, "graph-changes to stay quiet", every=0.5)
            assert counter.last_at is not None
            seconds = counter.last_at - started
            gap = counter.longest_gap
        stats = (await control.stats())["drives"][DRIVE]
        measured = Pass(
            size,
            expected,
            seconds,
            idle,
            sampler.peak,
            counter.distinct,
            counter.total,
            counter.repeated_ids,
            counter.change_types["created"],
            stats["deltaRuns"],
            stats["deltaRequests"],
            gap,
            counter.max_backlog,
            kill,
            counter.sample,
            os.getloadavg()[0],
        )
        read = "not read" if counter.distinct is None else f"{counter.distinct:,}"
        say(
            f"  {size:>7,} files{' (killed)' if kill else ''}: {expected:,} items in {seconds:.1f} s "
            f"= {measured.items_per_second:.0f} items/s; RSS idle {mb(idle)}, peak {mb(sampler.peak)} "
            f"({sampler.samples} samples); events {counter.total:,}, distinct {read}, "
            f"created {measured.created:,}; delta runs {measured.delta_runs}, requests {measured.delta_requests} "
            f"for {measured.pages} pages; longest gap {gap:.1f} s; "
            f"graph-changes backlog at most {counter.max_backlog:,}; load average {measured.load:.1f}"
        )
        raw = None
        if not kill:
            count = 2000 if size < 100_000 else 5000
            sends = await raw_send_rate(connection, counter.sample or "x" * 700, count, SENDERS)
            entities = await raw_transaction_rate(stack.azurite.connection_string, count, TRANSACTIONS_AT_ONCE)
            raw = (sends, entities)
            say(
                f"  raw, same Azurite: send_message x{SENDERS} ({len(counter.sample)} B) {sends:.0f} msg/s; "
                f"transactions of 100 x{TRANSACTIONS_AT_ONCE} {entities:.0f} entities/s"
            )
    return measured, raw


async def run(quick: bool) -> list[Row]:
    """Every size on a fresh stack, then the middle one (the first of chosen sizes) with the host killed halfway."""
    sizes: tuple[int, ...] = (5_000, 20_000) if quick else (5_000, 50_000, 200_000)
    chosen = os.environ.get("BENCH_LARGEDRIVE_SIZES")  # e.g. "5000,200000": fewer sizes, same method
    if chosen:
        sizes = tuple(int(part) for part in chosen.split(","))
    passes: list[Pass] = []
    raw: tuple[float, float] | None = None
    for size in sizes:
        measured, raw_here = await first_pass(size, kill=False)
        passes.append(measured)
        raw = raw_here or raw  # the largest drive's stack gives the baseline: its Azurite holds the most
    # The middle size: the kill costs a lease's wait and a repeated page, whatever the size.
    killed, _ = await first_pass(sizes[min(1, len(sizes) - 1)] if not chosen else sizes[0], kill=True)
    assert raw is not None
    return rows(passes, killed, raw)
