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
import math
import os
import time
from dataclasses import dataclass

from devtools.simclient import SimControl

from .baselines import raw_send_rate, raw_transaction_rate
from .counters import EventCounter, QueueCounter
from .harness import own_azurite, running_stack, subscribe_via_host, wait_until
from .memory import RssSampler, host_pid, rss_bytes
from .report import Row, rate, ratio, say

NAME = "largedrive"
DRIVE = "large-drive"
# Runs up to this size read every event (per-item distinctness); larger ones count the queue.
READ_UP_TO = 5_000
PAGE_SIZE = 200  # the simulator's delta page size, as Graph's default
MEMORY_GOAL = 100 * 2**20  # bytes above an idle host
# A killed run's message comes back after this hold (the real host's is 60 s plus renewals).
HOLD_SECONDS = 5
SENDERS = 16  # the product's send concurrency (shared.queues.MessageQueue)
TRANSACTIONS_AT_ONCE = 8  # the item index's write concurrency (shared.stores.items.ItemIndex)
QUIET_AFTER = 5.0  # seconds without events after the last expected one: late repeats would have come
MILLION = 1_000_000


@dataclass(frozen=True)
class Pass:
    """What one first pass over a drive of ``size`` files measured."""

    size: int
    expected: int  # files + folders + the root
    seconds: float  # subscribing -> last event
    idle_rss: int
    peak_rss: int
    distinct: int | None  # None: counted from the queue, not read (see READ_UP_TO)
    total: int
    repeated_ids: int
    created: int
    delta_runs: int
    delta_requests: int
    longest_gap: float
    backlog: int  # the most events graph-changes held at a sample: the drain kept up if small
    killed: bool
    sample: str
    load: float  # the machine's 1-minute load average at the end: on 2 cores, above 2 means contention

    @property
    def items_per_second(self) -> float:
        """Events' items per second from subscribing to the last event."""
        return self.total / self.seconds if self.seconds else 0.0

    @property
    def above_idle(self) -> int:
        """Peak resident memory above the idle host's."""
        return self.peak_rss - self.idle_rss

    @property
    def pages(self) -> int:
        """Delta pages a full enumeration of the drive takes."""
        return math.ceil(self.expected / PAGE_SIZE)


def mb(size: float) -> str:
    """Bytes as MB."""
    return f"{size / 2**20:.1f} MB"


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


def rows(passes: list[Pass], killed: Pass, raw: tuple[float, float]) -> list[Row]:
    """The table's rows: baseline, each size, the kill, and the extrapolation to 1,000,000 items."""
    sends, entities = raw
    # The least the pass must write per item, ignoring Graph, the index lookups and the cursor.
    floor = 1 / (1 / sends + 1 / entities)
    floor_text = rate(floor, "items/s")
    out = [
        Row(NAME, f"raw send_message, {SENDERS} senders (~{len(passes[-1].sample)} B event)", rate(sends, "msg/s")),
        Row(NAME, f"raw transactions of 100 upserts, {TRANSACTIONS_AT_ONCE} at once", rate(entities, "entities/s")),
        Row(NAME, "floor: 1 send + 1/100 transaction per item (no Graph, no lookups)", floor_text),
    ]
    for p in passes:
        out += [
            Row(
                NAME,
                f"{p.size:,} files ({p.expected:,} items): subscribe -> last event",
                f"{p.seconds:.1f} s = {rate(p.items_per_second, 'items/s')}; longest gap {p.longest_gap:.0f} s, "
                f"load {p.load:.1f}",
                floor_text,
                ratio(p.items_per_second, floor),
            ),
            Row(
                NAME,
                f"{p.size:,} files: host peak RSS above idle",
                f"{mb(p.above_idle)} (idle {mb(p.idle_rss)}, peak {mb(p.peak_rss)})",
                goal=f"< {mb(MEMORY_GOAL)}",
                met=p.above_idle < MEMORY_GOAL,
            ),
            Row(
                NAME,
                f"{p.size:,} files: items with an event / events / items",
                f"{p.distinct:,} / {p.total:,} / {p.expected:,} ({p.created:,} created)"
                if p.distinct is not None
                else f"events on graph-changes {p.total:,} / items {p.expected:,} (counted, not read)",
                goal="exactly one event per item",
                met=(p.distinct == p.total == p.expected == p.created)
                if p.distinct is not None
                else p.total == p.expected,
            ),
        ]
    clean = next(p for p in passes if p.size == killed.size)
    duplicates = killed.total - (killed.distinct if killed.distinct is not None else killed.expected)
    lost = killed.seconds - clean.seconds
    out += [
        Row(
            NAME,
            f"{killed.size:,} files, host killed at half: items with an event / items",
            f"{killed.distinct:,} / {killed.expected:,}; {duplicates} repeated ({killed.repeated_ids} same id)"
            if killed.distinct is not None
            else f"events {killed.total:,} for {killed.expected:,} items: {duplicates} repeated (counted, not read)",
            goal=f"all, <= 1 page ({PAGE_SIZE}) repeated",
            met=(killed.distinct if killed.distinct is not None else killed.total - duplicates) == killed.expected
            and 0 <= duplicates <= PAGE_SIZE,
        ),
        Row(
            NAME,
            "  time lost to the kill (vs the clean run)",
            f"{lost:.0f} s (no events for {killed.longest_gap:.0f} s; lease 60 s, hold {HOLD_SECONDS} s)",
        ),
        Row(
            NAME,
            "  delta runs / requests (clean run)",
            f"{killed.delta_runs} / {killed.delta_requests} ({clean.delta_runs} / {clean.delta_requests}); "
            f"{killed.pages} pages",
            goal="resumed, not restarted",
            # A restart would be a second enumeration: one more run and about half the pages again.
            met=killed.delta_runs <= clean.delta_runs + 1 and killed.delta_requests <= clean.delta_requests + 2,
        ),
        Row(
            NAME,
            f"  host peak RSS above idle (killed run, {killed.size:,} files)",
            mb(killed.above_idle),
        ),
    ]
    out += extrapolation(passes)
    return out


def extrapolation(passes: list[Pass]) -> list[Row]:
    """1,000,000 items at the largest size's rate; memory's trend between the smallest and largest size."""
    small, large = passes[0], passes[-1]
    if large.expected == small.expected:
        return []  # one size only (BENCH_LARGEDRIVE_SIZES): no trend to extrapolate from
    hours = MILLION / large.items_per_second / 3600 if large.items_per_second else float("nan")
    fell = large.items_per_second < 0.9 * small.items_per_second
    trend = (
        f"; items/s fell {small.items_per_second:.0f} -> {large.items_per_second:.0f} with size"
        if fell
        else f"; items/s held ({small.items_per_second:.0f} at {small.size:,})"
    )
    growth = large.above_idle - small.above_idle
    per_item = growth / (large.expected - small.expected)
    # Memory above idle grew linearly between the sizes if it grew: say what that would reach.
    at_million = large.above_idle + per_item * (MILLION - large.expected)
    memory = (
        f"grew {mb(growth)} from {small.size:,} to {large.size:,} files: ~{mb(at_million)} at 1,000,000 if linear"
        if growth > 10 * 2**20
        else f"flat: {mb(growth)} between {small.size:,} and {large.size:,} files"
    )
    return [
        Row(
            NAME,
            "1,000,000 items: first pass time (extrapolated)",
            f"~{hours * 60:.0f} min at {large.items_per_second:.0f} items/s{trend}",
        ),
        Row(NAME, "1,000,000 items: peak RSS above idle (extrapolated)", memory),
    ]
