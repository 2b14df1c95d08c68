"""Coalescing: delta runs per burst of notifications on one drive, with no change lost."""

from __future__ import annotations

import time

from devtools.simclient import SimControl

from .harness import ChangeWatcher, drive_subscriptions, quiet, running_stack, subscribe_via_host, wait_until
from .report import Row, say

NAME = "coalescing"
DRIVE = "burst-drive"
MAX_RUNS = 3


async def run(quick: bool) -> list[Row]:
    """Bulk-create N items per burst and count the simulator's delta runs until all N events arrived."""
    bursts = (10, 200) if quick else (10, 200, 1000)
    rows: list[Row] = []
    async with (
        running_stack(NAME, subscriptions=drive_subscriptions([DRIVE])) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        await control.create_drive(DRIVE)
        await subscribe_via_host(stack, control, 1)
        async with ChangeWatcher(stack.azurite.connection_string) as watcher:
            for size in bursts:
                await quiet(stack, control)  # the subscription's own first sync, or the last burst, is done
                await control.reset_stats()
                started = time.monotonic()
                ids = set((await control.create_items(DRIVE, size, prefix=f"burst{size}"))["ids"])

                async def all_arrived(ids: set[str] = ids) -> bool:
                    return watcher.count("created", ids) >= len(ids)

                await wait_until(all_arrived, limit=120, what=f"{size} created events")
                took = time.monotonic() - started
                # Late notifications of the burst must be handled too: a run they cause counts.
                await quiet(stack, control)
                stats = await control.stats()
                runs = stats["drives"][DRIVE]["deltaRuns"]
                delivered = stats["delivery"]["itemsDelivered"]
                posts = stats["delivery"]["successes"]
                say(
                    f"  burst {size:>5}: {runs} delta runs, {delivered} notifications in {posts} POSTs, "
                    f"all {size} created events after {took:.2f} s"
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
    return rows
