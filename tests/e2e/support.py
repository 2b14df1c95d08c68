"""Helpers for the end-to-end tests: polling with deadlines, reading change events, log tails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.messages import peek_count, receive_json
from devtools.simclient import SimControl
from devtools.stack import DEMO_DRIVE, LocalStack
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.sync.coalescing import MAX_DEFER

RESOURCE = f"drives/{DEMO_DRIVE}/root"
# Generous: the machine is small and shared with benchmarks. The checks stay strict.
DEADLINE = 30.0
LOG_TAIL_LINES = 60


def notification_for(subscription: dict[str, Any]) -> dict[str, Any]:
    """A change notification as Graph sends it for ``subscription`` (as the simulator lists it)."""
    return {
        "subscriptionId": subscription["id"],
        "clientState": subscription["clientState"],
        "changeType": "updated",
        "resource": subscription["resource"],
        "tenantId": "11111111-1111-1111-1111-111111111111",
    }


async def eventually(check: Callable[[], Awaitable[Any]], within: float = DEADLINE, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {within:.0f} s (last: {last!r})")
        await asyncio.sleep(0.2)


@dataclass
class Changes:
    """Change events read off graph-changes, accumulated across reads."""

    connection: str
    events: list[dict[str, Any]] = field(default_factory=list)

    async def read(self) -> list[dict[str, Any]]:
        """Take whatever is on the queue now."""
        self.events += await receive_json(self.connection, CHANGES_QUEUE)
        return self.events

    def for_item(self, item_id: str) -> list[dict[str, Any]]:
        """The events of one item, in arrival order."""
        return [e for e in self.events if e["itemId"] == item_id]

    async def wait(self, done: Callable[[], bool], within: float = DEADLINE, what: str = "events") -> None:
        """Read until ``done()``; fail after ``within`` seconds, listing what did arrive."""

        async def check() -> bool:
            await self.read()
            return done()

        try:
            await eventually(check, within, what)
        except AssertionError as exc:
            summary = [(e["changeType"], e["itemId"], (e["item"] or {}).get("name")) for e in self.events]
            raise AssertionError(f"{exc}; events so far: {summary}") from None


@dataclass
class E2E:
    """A running stack with the helpers the tests use."""

    stack: LocalStack
    control: SimControl
    changes: Changes

    @property
    def connection(self) -> str:
        return self.stack.azurite.connection_string

    async def subscription(self, other_than: str | None = None) -> dict[str, Any]:
        """The simulator's (single) subscription for the demo drive, once it exists."""

        async def find() -> dict[str, Any] | None:
            subs = [s for s in await self.control.subscriptions() if s["resource"].strip("/") == RESOURCE]
            assert len(subs) <= 1, f"more than one subscription for {RESOURCE}: {subs}"
            return subs[0] if subs and subs[0]["id"] != other_than else None

        found: dict[str, Any] = await eventually(find, what=f"a subscription for {RESOURCE}")
        return found

    async def delta_runs(self) -> int:
        """Delta queries the simulator answered for the demo drive."""
        stats = await self.control.stats()
        return int(stats["drives"].get(DEMO_DRIVE, {}).get("deltaRuns", 0))

    async def idle(self, within: float = MAX_DEFER.total_seconds() + DEADLINE) -> None:
        """Wait until the simulator has nothing left to deliver and graph-notifications is empty.

        Storage counts invisible (running or delayed) messages too, so an empty queue
        means every stored notification was processed and its events are written. A pass
        request that finds another pass under the resource's lease waits up to MAX_DEFER
        before it runs (after a restart, or beside a new subscription's first sync), so the
        default wait covers that delay as well.
        """

        async def check() -> bool:
            stats = await self.control.stats()
            if stats["delivery"]["pending"]:
                return False
            return await peek_count(self.connection, NOTIFICATIONS_QUEUE) == 0

        await eventually(check, within, "simulator delivery and graph-notifications drained")

    async def subscribe(self) -> dict[str, Any]:
        """Create the demo drive and run `renew`; return the subscription once its first sync ran."""
        await self.control.create_drive(DEMO_DRIVE)
        await asyncio.to_thread(self.stack.run_function, "renew")
        sub = await self.subscription()

        # Creating a subscription records a baseline and requests a sync; the timer's sweep requests one too.
        async def synced() -> bool:
            return await self.delta_runs() >= 1

        await eventually(synced, what="the first sync after subscribing")
        # The second request may find the first pass under its lease and wait MAX_DEFER before it runs:
        # idle counts that delayed message, so every request of the subscription's start is done.
        await self.idle()
        await self.changes.read()  # start from an empty graph-changes
        return sub


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def print_logs(stack: LocalStack, title: str) -> None:
    """The tails of a stack's host and simulator logs, for a failed test's report."""
    print(f"\n===== {title}: {stack.run_dir / 'host.log'} (last {LOG_TAIL_LINES} lines) =====")
    print(_tail(stack.run_dir / "host.log"))
    sim_log = stack.run_dir / "graphsim" / "graphsim.log"
    print(f"\n===== {title}: {sim_log} (last {LOG_TAIL_LINES} lines) =====")
    print(_tail(sim_log))
