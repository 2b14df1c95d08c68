"""End to end: from a change in the simulator to its event on graph-changes."""

from __future__ import annotations

import asyncio
import time

from devtools.simclient import SimControl

from .harness import ChangeWatcher, drive_subscriptions, quiet, running_stack, subscribe_via_host, wait_until
from .report import Row, ms, percentile, say

NAME = "latency"
P50_GOAL = 1.0
# The app allows one delta run per drive per second: changes on one drive come further apart than that.
SAME_DRIVE_SPACING = 1.1


async def run(quick: bool) -> list[Row]:
    """Interleave single changes over several drives and time each one to its event's arrival."""
    drives_count, rounds = (5, 6) if quick else (10, 10)
    drives = [f"lat-{n:02d}" for n in range(drives_count)]
    gap = SAME_DRIVE_SPACING / drives_count
    made: dict[str, float] = {}  # item id → when the change was requested
    async with (
        running_stack(NAME, subscriptions=drive_subscriptions(drives)) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        for drive in drives:
            await control.create_drive(drive)
        await subscribe_via_host(stack, control, drives_count)
        await quiet(stack, control)
        await asyncio.sleep(SAME_DRIVE_SPACING)  # the subscriptions' own first runs are out of the way
        async with ChangeWatcher(stack.azurite.connection_string) as watcher:
            for round_ in range(rounds):
                for drive in drives:
                    tick = time.monotonic()
                    # Stamped before the call: the figure includes the simulator's own handling.
                    item = await control.create_item(drive, f"r{round_:03d}.txt", "x")
                    made[item["id"]] = tick
                    await asyncio.sleep(max(0.0, gap - (time.monotonic() - tick)))

            async def all_arrived() -> bool:
                return watcher.count("created", set(made)) >= len(made)

            await wait_until(all_arrived, limit=60, what=f"{len(made)} created events")
            arrived = {e["itemId"]: t for t, e in watcher.arrivals if e.get("changeType") == "created"}
    delays = [arrived[item] - made[item] for item in made]
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    say(f"  {len(delays)} changes on {drives_count} drives: p50 {ms(p50)}, p99 {ms(p99)}, max {ms(max(delays))}")
    return [
        Row(NAME, f"change -> event, p50 ({len(delays)} changes, {drives_count} drives)", ms(p50), goal="< 1 s",
            met=p50 < P50_GOAL),
        Row(NAME, "change -> event, p99", ms(p99)),
        Row(NAME, "change -> event, max", ms(max(delays))),
    ]  # fmt: skip
