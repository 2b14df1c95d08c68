"""One tenant in a 429 storm: the other tenants' change-to-event latency, against a calm run on the same stack.

A stack with the local host (the queue trigger as the real host runs it: batches of 16,
5 s visibility, poison after 5 attempts) in TENANT_MODE=multi; calm tenants and one
stormy tenant each watch a drive of the same id, and each gets a file every SPACING s
throughout. First a calm phase; then the simulator answers every Graph request of the
stormy tenant with 429 and ``Retry-After: RETRY_AFTER`` for STORM seconds (its throttle
runs on the simulator's clock, which cannot shorten what the app lives through: the
app's retries wait real seconds, so the storm lasts as long in real time: 600 s, or 60 s
with ``--quick``). Timed from the simulator call to the event's arrival on graph-changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from devtools.messages import peek_count
from devtools.simclient import SimControl
from devtools.stack import LocalStack
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore

from .counters import ChangeWatcher, HostLog
from .harness import Background, drive_subscriptions, quiet, running_stack, wait_until
from .posts import NO_TICK
from .report import Row, ms, percentile, say
from .tenant_fleet import MULTI, in_tenant, onboard, tenant_ids

NAME = "tenants"
# Every tenant watches 5 drives (5 templates, as in the ramp): the stormy tenant can hold a pass per drive.
DRIVES = [f"storm-drive-{n}" for n in range(5)]
SPACING = 2.0  # seconds between two changes of one tenant (its drives in turn: each drive every 10 s)
RETRY_AFTER = 10  # the storm's Retry-After, seconds
RATIO_GOAL = 1.2
ARRIVAL_LIMIT = 60.0
RECOVERY_LIMIT = 180.0
POISON_QUEUE = f"{NOTIFICATIONS_QUEUE}-poison"


@dataclass
class Flow:
    """The changes made in one phase: (tenant, item id) -> when the change was asked for."""

    made: dict[tuple[str, str], float] = field(default_factory=dict)

    def delays(self, watcher: ChangeWatcher, tenants: set[str]) -> tuple[list[float], int]:
        """Each arrived change's delay among ``tenants``' changes, and how many did not arrive."""
        arrived: dict[tuple[str, str], float] = {}
        for at, event in watcher.arrivals:
            key = (str(event.get("tenantId", "")).lower(), str(event.get("itemId", "")))
            if event.get("changeType") == "created" and key in self.made:
                arrived.setdefault(key, at)
        mine = [k for k in self.made if k[0] in tenants]
        return [arrived[k] - self.made[k] for k in mine if k in arrived], sum(k not in arrived for k in mine)


class Depth(Background):
    """The notifications queue's depth and the stormy tenant's storm hits, sampled every second.

    It runs through both phases, so the calm run carries the same instrumentation as the
    storm. When it ran in the storm phase only (a new client for each sample, on the event
    loop that timestamps the arrivals), a run with no storm at all measured 1.10x.
    """

    def __init__(self, stack: LocalStack, control: SimControl, stormy: str) -> None:
        super().__init__()
        self._stack, self._control, self._stormy = stack, control, stormy
        self.depths: list[int] = []
        self.hits = 0

    def mark(self) -> int:
        """Where the samples of the phase that starts now begin."""
        return len(self.depths)

    async def run(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        async with queue_client(self._stack.azurite.connection_string, NOTIFICATIONS_QUEUE) as client:
            while True:
                try:
                    properties = await client.get_queue_properties()
                    self.depths.append(int(properties.approximate_message_count or 0))
                except ResourceNotFoundError:
                    self.depths.append(0)
                storm = (await self._control.call("GET", f"/tenants/{self._stormy}")).get("storm")
                if storm:
                    self.hits = max(self.hits, int(storm.get("hits", 0)))
                await asyncio.sleep(1.0)


async def make_changes(control: SimControl, tenants: list[str], seconds: float, flow: Flow) -> None:
    """A file in each tenant every SPACING s (its drives in turn), tenants in turn, on schedule, for ``seconds``."""
    gap = SPACING / len(tenants)
    started = time.monotonic()
    step = 0
    while (at := started + step * gap) < started + seconds:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        tenant = tenants[step % len(tenants)]
        drive = DRIVES[(step // len(tenants)) % len(DRIVES)]
        asked = time.monotonic()
        body = {"name": f"f{step:05d}.txt", "content": "x", "folder": False}
        made = await control.call("POST", in_tenant(f"/drives/{drive}/items", tenant), body)
        flow.made[(tenant, str(made["id"]))] = asked
        step += 1


def host_failures(stack: LocalStack, offset: int) -> tuple[int, int]:
    """Failed invocations of ``process`` and messages moved to poison, in the host's log since ``offset``."""
    with (stack.run_dir / "host.log").open("rb") as log:
        log.seek(offset)
        text = log.read().decode("utf-8", "replace")
    failed = text.count("Executed 'Functions.process' (Failed")
    return failed, text.count("Moving message to queue")


async def run(quick: bool) -> list[Row]:
    """A calm phase, then a storm in one tenant; the calm tenants' p50 in each."""
    calm_seconds, storm_seconds, calm_count = (40.0, 60.0, 3) if quick else (120.0, 600.0, 5)
    calm = tenant_ids(calm_count, 2)
    stormy = tenant_ids(1, 3)[0]
    everyone = [*calm, stormy]
    options: dict[str, Any] = {"subscriptions": drive_subscriptions(DRIVES),
                               "extra_env": {**MULTI, "RENEW_SCHEDULE": NO_TICK}}  # fmt: skip
    async with running_stack(f"{NAME}-storm", **options) as stack, SimControl(stack.sim.control_url) as control:
        connection = stack.azurite.connection_string
        await onboard(control, connection, everyone, DRIVES)
        await asyncio.to_thread(stack.run_function, "renew")

        async def subscribed() -> bool:
            with contextlib.suppress(Exception):  # the table appears once renew has started
                async with table_client(connection, SUBSCRIPTIONS_TABLE) as client:
                    records = await SubscriptionStore(client).list()
                return len([r for r in records if r.subscription_id]) >= len(everyone) * len(DRIVES)
            return False

        await wait_until(subscribed, limit=120, what=f"{len(everyone) * len(DRIVES)} subscriptions", every=0.5)
        log = HostLog(stack)
        async with ChangeWatcher(connection) as watcher, Depth(stack, control, stormy) as depth:
            await quiet(stack, control)
            calm_flow = Flow()
            await make_changes(control, everyone, calm_seconds, calm_flow)
            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: _arrived(calm_flow, watcher, set(everyone)), ARRIVAL_LIMIT, "calm events")
            calm_delays, calm_missing = calm_flow.delays(watcher, set(calm))
            await quiet(stack, control)

            log.mark()
            storm_samples = depth.mark()
            offset = (stack.run_dir / "host.log").stat().st_size
            poison_before = await peek_count(connection, POISON_QUEUE)
            storm_flow = Flow()
            say(f"  storm: tenant {stormy} answers 429 (Retry-After {RETRY_AFTER} s) for {storm_seconds:.0f} s")
            await control.call("POST", f"/tenants/{stormy}/throttle",
                               {"seconds": storm_seconds, "status": 429, "retryAfter": RETRY_AFTER})  # fmt: skip
            storm_started = time.monotonic()
            await make_changes(control, everyone, storm_seconds, storm_flow)
            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: _arrived(storm_flow, watcher, set(calm)), ARRIVAL_LIMIT, "calm events")
            storm_depths = depth.depths[storm_samples:]
            storm_delays, storm_missing = storm_flow.delays(watcher, set(calm))
            processed = log.processed()
            failed, poisoned_moves = host_failures(stack, offset)
            # After the storm: one more change, as Graph would notify of; what the stormy tenant missed arrives?
            await asyncio.sleep(max(0.0, storm_started + storm_seconds - time.monotonic()))
            storm_ended = time.monotonic()
            await make_changes(control, [stormy], 0.1, storm_flow)
            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: _arrived(storm_flow, watcher, {stormy}), RECOVERY_LIMIT, "the stormy tenant")
            recovered_after = time.monotonic() - storm_ended
            stormy_delays, stormy_missing = storm_flow.delays(watcher, {stormy})
            poisoned = await peek_count(connection, POISON_QUEUE) - poison_before
            failed_after, _ = host_failures(stack, offset)

    calm_p50, storm_p50 = percentile(calm_delays, 50), percentile(storm_delays, 50)
    ratio = storm_p50 / calm_p50
    peak_depth = max(storm_depths, default=0)
    say(f"  calm tenants: calm p50 {ms(calm_p50)} ({len(calm_delays)}), storm p50 {ms(storm_p50)} "
        f"({len(storm_delays)}, {storm_missing} missing), ratio {ratio:.2f}; queue depth max {peak_depth}; "
        f"{processed}; failed {failed}, poisoned {poisoned}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    label = f"{calm_count} calm tenants, one in a {storm_seconds:.0f} s 429 storm, 5 drives each"
    return [
        Row(NAME, f"storm: {label}: calm tenants' change -> event p50",
            f"{ms(storm_p50)} (p99 {ms(percentile(storm_delays, 99))}, {len(storm_delays)} changes"
            + (f", {storm_missing} MISSING after {ARRIVAL_LIMIT:.0f} s" if storm_missing else "") + ")",
            f"{ms(calm_p50)} calm (p99 {ms(percentile(calm_delays, 99))}, {len(calm_delays)}; {calm_missing} missing)",
            f"{ratio:.2f}x", f"<= {RATIO_GOAL:.1f}x calm", ratio <= RATIO_GOAL and not storm_missing),
        Row(NAME, "  storm: notifications queue depth (max / median, sampled each s)",
            f"{peak_depth} / {percentile([float(d) for d in storm_depths], 50):.0f}"),
        Row(NAME, "  storm: queue trigger during the storm (all tenants)",
            f"{processed['messages']} processed ({processed['deferred']} deferred, {processed['events']} events); "
            f"{failed} failed invocations (retried); {poisoned_moves} moved to poison"),
        Row(NAME, "  storm: the stormy tenant's Graph requests refused (429)", str(depth.hits)),
        Row(NAME, "  storm: the stormy tenant's changes after the storm",
            f"{len(stormy_delays)} / {len(stormy_delays) + stormy_missing} arrived "
            f"{recovered_after:.0f} s after its end; {poisoned} messages in poison; {failed_after} failed invocations",
            goal="all arrive, none lost", met=stormy_missing == 0),
    ]  # fmt: skip


async def _arrived(flow: Flow, watcher: ChangeWatcher, tenants: set[str]) -> bool:
    return flow.delays(watcher, tenants)[1] == 0
