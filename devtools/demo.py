"""`make demo`: the whole pipeline on one machine, in one command.

Starts Azurite, the Graph simulator and the local host; creates the subscription
through the `renew` function (so the validation handshake runs over real HTTP);
changes a file in a simulated drive; and prints the change events as they
arrive on the graph-changes queue. Ctrl-C stops everything it started.
With ``--tenants N`` (2 or more) it runs in TENANT_MODE=multi instead: see tenant_demo.py.
With ``--event-grid`` the subscription is delivered through an Event Grid partner topic: the
simulator creates the topic with the subscription, the demo activates it towards the local
host's Event Grid route (what scripts/activate-event-grid.sh does in Azure), and each change
arrives there as a CloudEvent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .azurite import ROOT
from .messages import receive_json
from .simclient import SimControl
from .stack import DEMO_DRIVE, LocalStack, seed_demo_drive, start_stack
from .tenant_demo import MAX_TENANTS, run_tenants

CHANGES_QUEUE = "graph-changes"
# The partner topic of the --event-grid demo: any Azure coordinates do, the simulator creates it.
EVENT_GRID = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": "00000000-0000-4000-8000-00000000e9e9",
    "EVENT_GRID_RESOURCE_GROUP": "rg-graphhooks-demo",
    "EVENT_GRID_PARTNER_TOPIC": "graphhooks-demo",
    "EVENT_GRID_LOCATION": "westeurope",
}
# The app runs at most one delta query per drive per second: spacing the steps shows each as its own event.
STEP_PAUSE = 1.5


def describe(event: dict[str, Any]) -> str:
    """One readable line for a change event."""
    item = event.get("item") or {}
    kind = "folder" if "folder" in item or "root" in item else "file"
    name = item.get("name", "(deleted)")
    when = datetime.now().strftime("%H:%M:%S")
    return (
        f"[{when}] {event['changeType']:<8} {kind:<6} {name!s:<34} "
        f"item {event['itemId'][:16]:<16} event {event['id'][:12]}"
    )


async def print_events(stack: LocalStack, seen: dict[str, dict[str, Any]], stop: asyncio.Event) -> None:
    """Print events from graph-changes until ``stop`` is set."""
    while not stop.is_set():
        for event in await receive_json(stack.azurite.connection_string, CHANGES_QUEUE):
            seen[event["id"]] = event
            print(describe(event), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def wait_for_subscription(control: SimControl, within: float = 30) -> dict[str, Any]:
    """The subscription `renew` created, once Graph (the simulator) has it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        subscriptions = await control.subscriptions()
        if subscriptions:
            return subscriptions[0]
        await asyncio.sleep(0.2)
    raise TimeoutError("renew created no subscription; see the host log")


async def script(stack: LocalStack, control: SimControl, seen: dict[str, dict[str, Any]]) -> str:
    """Create, rename, update and delete a file; return its item id."""
    steps: list[tuple[str, Any]] = []
    item = await control.create_item(DEMO_DRIVE, "Quarterly report.docx", "draft")
    steps.append(("created", item["name"]))
    print(f"  > created 'Quarterly report.docx' in {DEMO_DRIVE}", flush=True)
    await asyncio.sleep(STEP_PAUSE)
    await control.rename_item(DEMO_DRIVE, item["id"], "Quarterly report (final).docx")
    print("  > renamed it to 'Quarterly report (final).docx'", flush=True)
    await asyncio.sleep(STEP_PAUSE)
    await control.update_item(DEMO_DRIVE, item["id"], "final figures")
    print("  > updated its content", flush=True)
    await asyncio.sleep(STEP_PAUSE)
    await control.delete_item(DEMO_DRIVE, item["id"])
    print("  > deleted it", flush=True)
    return str(item["id"])


async def run(once: bool, run_dir: Path, event_grid: bool = False) -> int:
    """Run the demo; with ``once``, stop after the scripted changes' events arrived."""
    print("Starting Azurite, the Graph simulator and the local host ...", flush=True)
    options: dict[str, Any] = {}
    if event_grid:
        entry = {"resource": f"drives/{DEMO_DRIVE}/root", "delivery": "eventGrid"}
        options = {"subscriptions": [entry], "extra_env": EVENT_GRID}
    stack = await asyncio.to_thread(lambda: start_stack(run_dir, **options))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # closing the terminal stops it too
        loop.add_signal_handler(sig, stop.set)
    seen: dict[str, dict[str, Any]] = {}
    try:
        print(f"  local host      {stack.base_url}/api/notifications (log: {run_dir / 'host.log'})")
        print(f"  Graph simulator {stack.sim.info['graph_url']}")
        print(f"  Azurite         queue :{stack.azurite.queue_port}  table :{stack.azurite.table_port}")
        await seed_demo_drive(stack.sim.control_url)
        await asyncio.to_thread(stack.run_function, "renew")
        async with SimControl(stack.sim.control_url) as control:
            subscription = await wait_for_subscription(control)
            if event_grid:
                await route_topic(stack, control, subscription)
            else:
                print(f"Subscribed to {subscription['resource']}: the handshake was answered; id {subscription['id']}")
            printer = asyncio.create_task(print_events(stack, seen, stop))
            await asyncio.sleep(STEP_PAUSE)
            item_id = await script(stack, control, seen)
            if once:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not _complete(seen, item_id):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)  # Ctrl-C ends the wait early
                    if stop.is_set():
                        break
                stop.set()
            else:
                print("Waiting for more changes (the simulator's control API is at", stack.sim.control_url + ").")
                print("Press Ctrl-C to stop.", flush=True)
            await printer
        if once and not _complete(seen, item_id):
            print("the file's four events did not all arrive; see the host log", file=sys.stderr)
            return 1
        return 0
    finally:
        print("Stopping ...", flush=True)
        await asyncio.to_thread(stack.stop)


async def route_topic(stack: LocalStack, control: SimControl, subscription: dict[str, Any]) -> None:
    """Activate the partner topic Graph created and send its events to the host's Event Grid route."""
    from .eventgrid_control import EventGridControl

    route = f"{stack.base_url}/runtime/webhooks/eventgrid?functionName=eventgrid"
    topic = await EventGridControl(control).activate(subscription["notificationUrl"], route)
    print(f"Subscribed to {subscription['resource']} through Event Grid: id {subscription['id']}")
    print(f"  partner topic   {topic.get('name', '?')} (created by Graph, activated now)")
    print(f"  delivered to    {route} as CloudEvents", flush=True)


def _complete(seen: dict[str, dict[str, Any]], item_id: str) -> bool:
    kinds = [e["changeType"] for e in seen.values() if e["itemId"] == item_id]
    return kinds.count("created") == 1 and kinds.count("updated") == 2 and kinds.count("deleted") == 1


async def run_many(count: int, once: bool, run_dir: Path) -> int:
    """The multi-tenant demo (``--tenants``), stopped by the same signals."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await run_tenants(count, once, run_dir, stop)
    except (RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def tenant_count(text: str) -> int:
    """--tenants: 1 (one tenant, the default demo) to MAX_TENANTS."""
    count = int(text)
    if not 1 <= count <= MAX_TENANTS:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_TENANTS}")
    return count


def main(argv: list[str] | None = None) -> None:
    """Entry point for `python -m devtools.demo`."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit once the scripted changes' events arrived")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "demo", help="logs and state")
    parser.add_argument(
        "--tenants",
        type=tenant_count,
        default=1,
        metavar="N",
        help="serve N tenants (TENANT_MODE=multi) and show their events side by side (default 1: single mode)",
    )
    parser.add_argument(
        "--event-grid",
        action="store_true",
        help="deliver through an Event Grid partner topic as CloudEvents instead of the webhook",
    )
    args = parser.parse_args(argv)
    if args.tenants > 1 and args.event_grid:
        parser.error("--event-grid is single-tenant: a partner topic lives in the deployment's own tenant")
    if args.tenants > 1:
        sys.exit(asyncio.run(run_many(args.tenants, args.once, args.run_dir)))
    sys.exit(asyncio.run(run(args.once, args.run_dir, args.event_grid)))


if __name__ == "__main__":
    main()
