"""End to end: from a change in the simulator to its event on graph-changes, at several spacings.

The app runs at most one delta pass per drive per second (``DEFAULT_MIN_INTERVAL``),
so changes closer together than that on one drive are where latency is paid: each
spacing is measured on one drive and interleaved across several drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

from devtools.simclient import SimControl
from shared.sync.coalescing import DEFAULT_MIN_INTERVAL

from .counters import ChangeWatcher
from .harness import drive_subscriptions, quiet, running_stack, subscribe_via_host, wait_until
from .report import Row, ms, percentile, say

NAME = "latency"
P50_GOAL = 1.0
SPACINGS = (0.2, 0.5, 1.1)  # seconds between two changes of one drive
ARRIVAL_LIMIT = 60.0


@dataclass(frozen=True)
class Case:
    """One spacing on ``drives``: each drive changed every ``spacing`` s, ``rounds`` times."""

    spacing: float
    drives: list[str]
    rounds: int

    @property
    def label(self) -> str:
        """How the case reads in the table."""
        where = "one drive" if len(self.drives) == 1 else f"{len(self.drives)} drives"
        return f"{where}, every {self.spacing:g} s"


def cases(quick: bool) -> list[Case]:
    """Per spacing: one drive, then several interleaved; each case has drives of its own."""
    one_drive, across, rounds = (15, 5, 3) if quick else (40, 10, 5)
    out: list[Case] = []
    for spacing in SPACINGS:
        tag = f"{spacing:g}".replace(".", "p")
        out.append(Case(spacing, [f"lat-one-{tag}"], one_drive))
        out.append(Case(spacing, [f"lat-x{tag}-{n:02d}" for n in range(across)], rounds))
    return out


async def measure(case: Case, control: SimControl, watcher: ChangeWatcher) -> tuple[list[float], int, int]:
    """Make the case's changes on schedule; return each arrived change's delay, the missing count, delta runs."""
    before = (await control.stats())["drives"]
    gap = case.spacing / len(case.drives)
    made: dict[str, float] = {}  # item id -> when the change was requested
    started = time.monotonic()
    step = 0
    for round_ in range(case.rounds):
        for drive in case.drives:
            # On a fixed schedule, so a slow call does not stretch the spacing for the next ones.
            await asyncio.sleep(max(0.0, started + step * gap - time.monotonic()))
            tick = time.monotonic()
            # Stamped before the call: the figure includes the simulator's own handling.
            item = await control.create_item(drive, f"r{round_:03d}.txt", "x")
            made[item["id"]] = tick
            step += 1

    async def all_arrived() -> bool:
        return watcher.count("created", set(made)) >= len(made)

    with contextlib.suppress(TimeoutError):  # a change that never arrives is reported, not raised
        await wait_until(all_arrived, limit=ARRIVAL_LIMIT, what=f"{len(made)} created events")
    arrived: dict[str, float] = {}
    for at, event in watcher.arrivals:
        if event.get("changeType") == "created" and event.get("itemId") in made:
            arrived.setdefault(event["itemId"], at)
    after = (await control.stats())["drives"]
    runs = sum(after[d]["deltaRuns"] - before.get(d, {}).get("deltaRuns", 0) for d in case.drives)
    return [arrived[i] - made[i] for i in made if i in arrived], len(made) - len(arrived), runs


async def run(quick: bool) -> list[Row]:
    """Every case on one stack, one after the other, with the pipeline quiet between them."""
    plan = cases(quick)
    drives = [d for case in plan for d in case.drives]
    rows: list[Row] = []
    async with (
        running_stack(NAME, subscriptions=drive_subscriptions(drives)) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        for drive in drives:
            await control.create_drive(drive)
        await subscribe_via_host(stack, control, len(drives))
        async with ChangeWatcher(stack.azurite.connection_string) as watcher:
            for case in plan:
                await quiet(stack, control)
                # The drives' own first passes (or the last case's) are out of the way.
                await asyncio.sleep(DEFAULT_MIN_INTERVAL.total_seconds() + 0.1)
                delays, missing, runs = await measure(case, control, watcher)
                count = len(delays) + missing
                p50, p99 = percentile(delays, 50), percentile(delays, 99)
                worst = max(delays, default=float("nan"))
                say(
                    f"  {case.label:<24} {count} changes: p50 {ms(p50)}, p99 {ms(p99)}, max {ms(worst)}; "
                    f"{runs} delta runs; {missing} missing; load average {os.getloadavg()[0]:.1f}"
                )
                rows.append(
                    Row(
                        NAME,
                        f"change -> event, {case.label} ({count} changes)",
                        f"p50 {ms(p50)}, p99 {ms(p99)}, max {ms(worst)}; {runs} delta runs"
                        + (f"; {missing} MISSING after {ARRIVAL_LIMIT:.0f} s" if missing else ""),
                        goal="p50 < 1 s",
                        met=not missing and p50 < P50_GOAL,
                    )
                )
    return rows
