"""The figures of a first pass over a large drive: what one pass measured, and its rows in the table."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .report import Row, rate, ratio

NAME = "largedrive"
PAGE_SIZE = 200  # the simulator's delta page size, as Graph's default
MEMORY_GOAL = 100 * 2**20  # bytes above an idle host
# A killed run's message comes back after this hold (the real host's is 60 s plus renewals).
HOLD_SECONDS = 5
SENDERS = 16  # the product's send concurrency (shared.queues.MessageQueue)
TRANSACTIONS_AT_ONCE = 8  # the item index's write concurrency (shared.stores.items.ItemIndex)
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
