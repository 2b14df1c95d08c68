"""Coalescing: delta runs per burst of notifications on one drive, with no change lost.

Each burst is followed until the pipeline has settled: every notification acked, the
deferred duplicates included (they may still cost a delta run, which counts for the
burst). How long that tail lasts, and how many deferrals it took, are figures too.
"""

from __future__ import annotations

import os
import time

from devtools.simclient import SimControl
from shared.sync.coalescing import MAX_DEFER

from .counters import ChangeWatcher, HostLog
from .harness import SETTLE_LIMIT, drive_subscriptions, quiet, running_stack, subscribe_via_host, wait_until
from .report import Row, say

NAME = "coalescing"
DRIVE = "burst-drive"
MAX_RUNS = 3
# A duplicate that meets a pass of several pages waits MAX_DEFER, then the copies that lose the
# lease race to the one covering pass wait their back-off (at most MAX_DEFER) once more.
TAIL_GOAL = 2 * MAX_DEFER.total_seconds()


async def run(quick: bool) -> list[Row]:
    """Bulk-create N items per burst; count delta runs and deferrals until the pipeline settles."""
    bursts = (10, 200) if quick else (10, 200, 1000)
    rows: list[Row] = []
    async with (
        running_stack(NAME, subscriptions=drive_subscriptions([DRIVE])) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        await control.create_drive(DRIVE)
        await subscribe_via_host(stack, control, 1)
        host = HostLog(stack)
        async with ChangeWatcher(stack.azurite.connection_string) as watcher:
            for size in bursts:
                await quiet(stack, control)  # the subscription's own first sync, or the last burst, is done
                await control.reset_stats()
                host.mark()
                started = time.monotonic()
                ids = set((await control.create_items(DRIVE, size, prefix=f"burst{size}"))["ids"])

                async def all_arrived(ids: set[str] = ids) -> bool:
                    return watcher.count("created", ids) >= len(ids)

                await wait_until(all_arrived, limit=120, what=f"{size} created events")
                took = time.monotonic() - started
                # Late notifications of the burst must be handled too: a run they cause counts.
                try:
                    tail = await quiet(stack, control)
                except TimeoutError:
                    tail = float("inf")  # reported below; a later burst would count this one's leftovers
                stats = await control.stats()
                done = host.processed()
                runs = stats["drives"][DRIVE]["deltaRuns"]
                delivered = stats["delivery"]["itemsDelivered"]
                posts = stats["delivery"]["successes"]
                messages, deferrals = done["messages"], done["deferred"]
                say(
                    f"  burst {size:>5}: {runs} delta runs, {delivered} notifications in {posts} POSTs, "
                    f"all {size} created events after {took:.2f} s; settled {tail:.1f} s later: "
                    f"{messages} messages processed ({deferrals} deferrals, {done['skipped']} skipped); "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                rows.append(
                    Row(
                        NAME,
                        f"burst of {size}: delta runs",
                        f"{runs} runs ({delivered} notif in {posts} POSTs; events in {took:.1f} s)",
                        f"{delivered} notif",
                        f"{runs / delivered:.3f} runs/notif" if delivered else "-",
                        f"<= {MAX_RUNS} runs, none lost",
                        runs <= MAX_RUNS,
                    )
                )
                rows.append(
                    Row(
                        NAME,
                        f"burst of {size}: settled after the events",
                        (f"{tail:.1f} s" if tail <= SETTLE_LIMIT else f"NOT within {SETTLE_LIMIT:.0f} s")
                        + f"; {deferrals} deferrals, {messages} messages processed",
                        f"{posts} POSTs",
                        goal=f"<= {TAIL_GOAL:.0f} s",
                        met=tail <= TAIL_GOAL,
                    )
                )
                if tail == float("inf"):
                    break
    return rows
