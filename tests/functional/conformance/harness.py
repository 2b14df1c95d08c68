"""The kit's harness: one kind's stack, its changes, and the host's part (deliver, process, retry)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema

from devtools.messages import receive_json
from shared.app.worker import build_worker
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.model.resources import resource_key
from shared.stores.clients import queue_client
from tests.functional.stacks import Stack

from .faults import Faults, Killed, install, uninstall
from .kinds import Driver, Item

# Coalescing waits up to this long for the rest of a burst; the kit checks what is stored, not how
# passes are batched, so it waits less.
KIT_MIN_INTERVAL = timedelta(milliseconds=50)
SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "change-event.schema.json").read_text())


@dataclass
class Kit:
    """A kind under test: its driver, its stack, and every event seen so far."""

    driver: Driver
    stack: Stack
    record: Any
    handled: list[str] = field(default_factory=list)  # the notification messages the last settle processed

    @classmethod
    async def start(cls, driver: Driver, stack_factory: Any, tmp_path: Path) -> Kit:
        stack = await driver.stack(stack_factory, tmp_path)
        _hurry(stack.worker)
        kit = cls(driver, stack, await driver.record(stack))
        await kit.settle()  # the subscription's first pass
        return kit

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.stack.events

    def of(self, item: Item) -> list[dict[str, Any]]:
        """The events about ``item``, in order."""
        return [e for e in self.events if e["itemId"] == item.id]

    def types(self, item: Item) -> list[str]:
        return [e["changeType"] for e in self.of(item)]

    async def create(self) -> Item:
        return await self.driver.create(self.stack)

    async def settle(self, faults: Faults | None = None, within: float = 40.0) -> None:
        """Deliver and process every notification until nothing is left, as the host would.

        With ``faults``, the worker fails once where they say; a failed message is retried
        at once (the host would after its visibility timeout), by a new worker if the old
        one was killed, once the dead worker's lease has run out.
        """
        worker = self.stack.worker
        if faults is not None:
            install(worker, faults)
        self.handled = []
        deadline = time.monotonic() + within
        quiet = 0
        try:
            async with queue_client(self.stack.connection, NOTIFICATIONS_QUEUE) as client:
                while quiet < 2:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.driver.name}: notifications still pending after {within} s")
                    pending = (await self.stack.control.stats())["delivery"]["pending"]
                    messages = [m async for m in client.receive_messages(max_messages=16, visibility_timeout=30)]
                    for message in messages:
                        try:
                            await worker.processor.handle(message.content, message.inserted_on, message.dequeue_count)
                        except Killed:
                            worker = await self._revive(worker)
                            await client.update_message(message, visibility_timeout=0)
                            continue
                        except Exception:
                            if faults is None or not faults.fired:
                                raise
                            await client.update_message(message, visibility_timeout=0)  # the host's retry
                            continue
                        self.handled.append(message.content)
                        await client.delete_message(message)
                    await self._collect()
                    if messages or pending:
                        quiet = 0
                        continue
                    waiting = (await client.get_queue_properties()).approximate_message_count
                    quiet = 0 if waiting else quiet + 1
                    await asyncio.sleep(0.05)
        finally:
            uninstall(self.stack.worker)

    async def _collect(self) -> None:
        self.stack.events += await receive_json(
            self.stack.env.get("CHANGES_STORAGE") or self.stack.connection, CHANGES_QUEUE
        )

    async def _revive(self, dead: Any) -> Any:
        """A new worker in place of a killed one, once the lease the dead one held has run out."""
        await self.replace_worker()
        await self.expire_lease()
        return self.stack.worker

    async def replace_worker(self) -> None:
        """A new worker, as a new instance (or the same one restarted) would build it."""
        self.stack.others.append(self.stack.worker)
        self.stack.worker = await build_worker(self.stack.env)
        _hurry(self.stack.worker)

    async def expire_lease(self) -> None:
        """Let a dead worker's lease run out (60 s in production) without waiting for it."""
        cursors = self.stack.worker.processor._sync._cursors
        cursor = await cursors.load(resource_key(self.record.resource))
        if cursor.exists and cursor.state.lease_until is not None:
            await cursors.write(cursor, replace(cursor.state, lease_until=None))

    async def snapshot(self) -> Any:
        """The resource's cursor as stored now."""
        return await self.stack.worker.processor._sync._cursors.load(resource_key(self.record.resource))

    async def repeat(self, before: Any) -> None:
        """Put the cursor back to ``before`` and process the last settle's notifications again.

        As after a crash that lost the cursor's save, or a duplicate delivery from Graph:
        the same pages (or the same notified changes) are read again.
        """
        cursors = self.stack.worker.processor._sync._cursors
        now = await cursors.load(before.key)
        await cursors.write(now, replace(before.state, lease_until=None))
        for content in self.handled:
            await self.stack.worker.processor.handle(content, None, 1)
        await self._collect()

    def check_schema(self) -> None:
        """Every event seen validates against schemas/change-event.schema.json."""
        for event in self.events:
            jsonschema.validate(event, SCHEMA)

    def ids_by_type(self, item: Item) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for event in self.of(item):
            found[event["changeType"]].add(event["id"])
        return found


def _hurry(worker: Any) -> None:
    worker.processor._sync._min_interval = KIT_MIN_INTERVAL
