"""The Event Grid channel and the CloudEvents form: what they cost next to the webhook and the native event.

1. Latency: one stack whose drives are watched half through the webhook and half through an
   Event Grid partner topic (the simulator's, activated towards the local host's Event Grid
   route), each drive changed every SPACING s, interleaved. Timed from the simulator call to
   the event's arrival on graph-changes. The simulator hands an event to the host at once;
   Azure's Event Grid adds its own publishing and delivery time, which this does not measure.
2. The same with ``EVENT_FORMAT=cloudevents`` on the webhook drives: every event is written
   as a CloudEvent by the cloudevents package at the fan-out.
3. In process: events formatted per second, native JSON against structured CloudEvents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from devtools.eventgrid_control import EventGridControl
from devtools.simclient import SimControl
from shared.model.event_formats import fit_structured, native_event

from .counters import ChangeWatcher
from .harness import quiet, running_stack, subscribe_via_host, wait_until
from .report import Row, ms, percentile, say

NAME = "eventgrid"
SPACING = 1.1  # seconds between two changes of one drive: above the one-pass-a-second floor
ARRIVAL_LIMIT = 60.0
P50_GOAL = 1.0
CHANNEL = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": "00000000-0000-4000-8000-0000000bec41",
    "EVENT_GRID_RESOURCE_GROUP": "rg-bench",
    "EVENT_GRID_PARTNER_TOPIC": "bench-topic",
    "EVENT_GRID_LOCATION": "westeurope",
}
SAMPLE_EVENT = {
    "schemaVersion": 1,
    "id": "4c1f0e7d9a2b3c4d5e6f7a8b9c0d1e2f",
    "kind": "driveItem",
    "changeType": "updated",
    "resource": "drives/b!bench/root",
    "itemId": "01BYE5RZ56Y2GOVW7725BZO354PWSELRRZ",
    "subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727",
    "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    "observedAt": "2026-12-07T10:00:01.123456Z",
    "resync": False,
    "item": {"id": "01BYE5RZ56Y2GOVW7725BZO354PWSELRRZ", "name": "report.docx", "size": 18211, "eTag": "e1,2"},
}


def drives(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:02d}" for n in range(count)]


async def changes_through(
    control: SimControl, watcher: ChangeWatcher, groups: dict[str, list[str]], rounds: int
) -> dict[str, tuple[list[float], int]]:
    """Change every drive ``rounds`` times, interleaved on a fixed schedule; per group, delays and missing."""
    every = [(group, drive) for group, names in groups.items() for drive in names]
    gap = SPACING / len(every)
    made: dict[str, tuple[str, float]] = {}
    started, step = time.monotonic(), 0
    for round_ in range(rounds):
        for group, drive in every:
            await asyncio.sleep(max(0.0, started + step * gap - time.monotonic()))
            tick = time.monotonic()
            item = await control.create_item(drive, f"r{round_:03d}.txt", "x")
            made[item["id"]] = (group, tick)
            step += 1

    def arrived() -> dict[str, float]:
        found: dict[str, float] = {}
        for at, message in watcher.arrivals:
            event = native_event(message)
            if event.get("changeType") == "created" and event.get("itemId") in made:
                found.setdefault(event["itemId"], at)
        return found

    async def done() -> bool:
        return len(arrived()) >= len(made)

    with contextlib.suppress(TimeoutError):
        await wait_until(done, ARRIVAL_LIMIT, f"{len(made)} created events")
    found = arrived()
    out: dict[str, tuple[list[float], int]] = {}
    for group in groups:
        mine = [i for i, (g, _) in made.items() if g == group]
        out[group] = ([found[i] - made[i][1] for i in mine if i in found], sum(i not in found for i in mine))
    return out


async def stack_case(event_format: str, quick: bool) -> dict[str, tuple[list[float], int]]:
    """Webhook drives and Event Grid drives on one stack writing ``event_format``."""
    count, rounds = (3, 10) if quick else (5, 30)
    groups = {"webhook": drives("eg-hook", count), "eventGrid": drives("eg-grid", count)}
    entries = [{"resource": f"drives/{d}/root"} for d in groups["webhook"]]
    entries += [{"resource": f"drives/{d}/root", "delivery": "eventGrid"} for d in groups["eventGrid"]]
    env = {**CHANNEL, "EVENT_FORMAT": event_format}
    async with (
        running_stack(f"{NAME}-{event_format}", subscriptions=entries, extra_env=env) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        for drive in (d for names in groups.values() for d in names):
            await control.create_drive(drive)
        subscriptions = await subscribe_via_host(stack, control, len(entries))
        topic_url = next(s["notificationUrl"] for s in subscriptions if s["notificationUrl"].startswith("EventGrid:"))
        route = f"{stack.base_url}/runtime/webhooks/eventgrid?functionName=eventgrid"
        await EventGridControl(control).activate(topic_url, route)
        async with ChangeWatcher(stack.azurite.connection_string) as watcher:
            await quiet(stack, control)
            await asyncio.sleep(1.2)
            return await changes_through(control, watcher, groups, rounds)


def formatting_rate(seconds: float) -> tuple[float, float]:
    """Events formatted per second in this process: native JSON, then structured CloudEvents."""
    text = json.dumps(SAMPLE_EVENT, separators=(",", ":"))

    def native() -> str:
        return json.dumps(json.loads(text), separators=(",", ":"))

    def wrapped() -> str:
        return fit_structured(text)

    rates = []
    for make in (native, wrapped):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            make()
            done += 1
        rates.append(done / (time.perf_counter() - started))
    return rates[0], rates[1]


async def run(quick: bool) -> list[Row]:
    """Both channels with native events, the webhook with CloudEvents, and the formatting rate."""
    rows: list[Row] = []
    native = await stack_case("native", quick)
    cloud = await stack_case("cloudevents", quick)
    for label, (delays, missing) in [
        ("webhook, native events", native["webhook"]),
        ("Event Grid, native events", native["eventGrid"]),
        ("webhook, EVENT_FORMAT=cloudevents", cloud["webhook"]),
        ("Event Grid, EVENT_FORMAT=cloudevents", cloud["eventGrid"]),
    ]:
        p50, p99 = percentile(delays, 50), percentile(delays, 99)
        say(f"  {label:<38} {len(delays)} changes: p50 {ms(p50)}, p99 {ms(p99)}; {missing} missing; "
            f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        rows.append(
            Row(
                NAME,
                f"change -> event, {label}",
                f"p50 {ms(p50)}, p99 {ms(p99)} ({len(delays)} changes"
                + (f", {missing} MISSING after {ARRIVAL_LIMIT:.0f} s" if missing else "")
                + ")",
                goal="p50 < 1 s, none missing",
                met=not missing and p50 < P50_GOAL,
            )
        )
    plain, wrapped = formatting_rate(0.5 if quick else 2.0)
    rows.append(
        Row(
            NAME,
            "events formatted per second, one process (native JSON / structured CloudEvent)",
            f"{plain:,.0f} / {wrapped:,.0f}",
            ratio=f"{plain / wrapped:.1f}x the cost",
        )
    )
    return rows
