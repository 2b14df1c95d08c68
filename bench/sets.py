"""Subscription sets: the ramp of a set of 5,000 members (``--quick``: 300) under Graph's write limit.

One GRAPH_SUBSCRIPTIONS entry expands over a group's members
(``users/{member}/drive/root``, forEachMemberOf). The simulator adds 200 ms to each
subscription write, like real Graph; the reconciler runs in this process. Figures:
the ramp (the first tick, creating a subscription per member) against the floor
that 500 writes per 20 s sets, the peak writes in any 20 s and the 429s; then a
tick after one member joined and one left: two writes, one groups-delta call.
"""

from __future__ import annotations

import time

from devtools.simclient import SimControl
from shared.reconcile.reconciler import CONCURRENCY

from .harness import make_drives
from .report import Row, say
from .writes import GRAPH_LIMIT, WRITE_LATENCY_MS, WriteLog, floor_seconds, reconciler_under_limit

NAME = "sets"
GROUP = "5e7a0000-0000-4000-8000-00000000beef"


async def run(quick: bool) -> list[Row]:
    """Ramp a set of N members, then follow a join and a leave."""
    count = 300 if quick else 5_000
    entry = {"resource": "users/{member}/drive/root", "changeType": "updated", "forEachMemberOf": GROUP}
    log = WriteLog()
    users: list[str] = []

    async def seed(control: SimControl) -> None:
        """The members and one more, each with a OneDrive, and the group of the members."""
        users.extend(await control.generate_users(count + 1, "member"))
        await make_drives(control, {f"b!set-{user}": {"userId": user} for user in users})
        await control.create_group(GROUP, members=users[:count], displayName="Everyone")
        say(f"  set of {count} members seeded")

    async with reconciler_under_limit(NAME, log, seed, subscriptions=[entry]) as (_, control, worker):
        members, newcomer = users[:count], users[count]
        reconciler, desired = worker.reconciler, worker.settings.subscriptions
        assert reconciler is not None  # single mode: Graph's one reconciler
        t0 = time.monotonic()
        ramp = await reconciler.reconcile(desired)
        t1 = time.monotonic()
        say(f"  ramp: created {ramp.created} (failed {ramp.failed}) in {t1 - t0:.1f} s")
        await control.add_members(GROUP, [newcomer])
        await control.remove_member(GROUP, members[0])
        before = (await control.stats())["subscriptionWrites"]
        t2 = time.monotonic()
        moved = await reconciler.reconcile(desired)
        t3 = time.monotonic()
        writes_after = (await control.stats())["subscriptionWrites"] - before
        say(f"  join + leave: created {moved.created}, deleted {moved.deleted} in {t3 - t2:.1f} s")

    floor = floor_seconds(count, WRITE_LATENCY_MS / 1000, CONCURRENCY)
    writes, throttled = log.counts(t0 - 0.5, t1 + 0.5)
    peak = log.peak(t0, t1)
    tick = t1 - t0
    bound = tick <= 1.25 * floor if floor >= 40 else None
    return [
        Row(NAME, f"ramp: set of {count} members ({WRITE_LATENCY_MS} ms writes)",
            f"{tick:.1f} s, {ramp.created} ok, {ramp.failed} failed, {writes} writes",
            f"floor {floor:.0f} s", f"{tick / floor:.2f}x floor",
            "<= 1.25x floor" if bound is not None else "", bound),
        Row(NAME, "  ramp: throttled (429) / peak writes per 20 s (sampled)", f"{throttled} / {peak}",
            goal=f"0 / <= {GRAPH_LIMIT}", met=throttled == 0 and peak <= GRAPH_LIMIT),
        # Creations that failed during the ramp are retried by this tick too.
        Row(NAME, "then one joins, one leaves: next tick", f"{t3 - t2:.1f} s, +{moved.created} -{moved.deleted}, "
            f"{writes_after} writes", goal=f"+{1 + ramp.failed} -1, {2 + ramp.failed} writes",
            met=(moved.created, moved.deleted, writes_after) == (1 + ramp.failed, 1, 2 + ramp.failed)),
    ]  # fmt: skip
