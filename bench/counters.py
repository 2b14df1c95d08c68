"""Counting what reaches graph-changes and what the host's queue trigger did, while a benchmark runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from typing import Any

from devtools.stack import LocalStack

from .harness import CHANGES_QUEUE, Background, cancelled


class HostLog:
    """What the host's queue trigger did since a mark, from its ``message.processed`` log lines.

    function_app logs one per queue message with the processor's summary (runs, skipped,
    deferred, events...), so deferrals, which leave no other trace once acked, can be counted.
    """

    def __init__(self, stack: LocalStack) -> None:
        self._path = stack.run_dir / "host.log"
        self._offset = 0

    def mark(self) -> None:
        """Count from here on."""
        self._offset = self._path.stat().st_size if self._path.exists() else 0

    def processed(self) -> Counter[str]:
        """The summaries' fields added up since the mark, plus ``messages``: how many were processed."""
        totals: Counter[str] = Counter()
        with self._path.open("rb") as log:
            log.seek(self._offset)
            for line in log.read().decode("utf-8", "replace").splitlines():
                if " message.processed " not in line:
                    continue
                totals["messages"] += 1
                for field in line.split(" message.processed ", 1)[1].split():
                    name, _, value = field.partition("=")
                    if value.isdigit() and name != "dequeue_count":
                        totals[name] += int(value)
        return totals


class ChangeWatcher(Background):
    """Takes every event off graph-changes as it arrives and notes when it arrived.

    One long-lived client polling without pause: a fresh client per poll (as
    devtools.messages.receive_json makes) would add its set-up to every timestamp.
    """

    def __init__(self, connection: str) -> None:
        super().__init__()
        self._connection = connection
        self.arrivals: list[tuple[float, dict[str, Any]]] = []

    def count(self, change_type: str, item_ids: set[str] | None = None) -> int:
        """How many distinct items have had a ``change_type`` event (among ``item_ids``, if given)."""
        seen = {e["itemId"] for _, e in self.arrivals if e.get("changeType") == change_type}
        return len(seen if item_ids is None else seen & item_ids)

    async def run(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.stores.clients import queue_client

        async with queue_client(self._connection, CHANGES_QUEUE) as client:
            while True:
                try:
                    batch = [m async for m in client.receive_messages(messages_per_page=32, max_messages=32)]
                except ResourceNotFoundError:  # nothing was emitted yet
                    batch = []
                arrived = time.monotonic()
                for message in batch:
                    self.arrivals.append((arrived, json.loads(message.content)))
                # Deleted after timestamping, so the deletes do not delay the next arrival's stamp.
                await asyncio.gather(*(client.delete_message(m) for m in batch))
                if not batch:
                    await asyncio.sleep(0.01)


class EventCounter:
    """Drains graph-changes with several receive loops, counting events instead of keeping them.

    Per item it keeps only how many events arrived and a hash of the first one's id,
    so a drive of 200,000 items costs the benchmark tens of MB, not the parsed events.
    Deletes go to a pool of their own: on Azurite a delete costs about three sends, and
    a receive loop that waited for them would fall behind. A received message stays
    invisible for ``HIDE_SECONDS``, so a slow delete never lets it be counted twice.
    """

    HIDE_SECONDS = 600

    def __init__(self, connection: str, loops: int = 4, deleters: int = 16) -> None:
        self._connection = connection
        self._loops = loops
        self._deleters = deleters
        self.per_item: dict[str, int] = {}
        self._first_id: dict[str, int] = {}
        self.change_types: Counter[str] = Counter()
        self.total = 0
        self.repeated_ids = 0  # repeats that carried the same event id as the item's first event
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.sample = ""  # one event's JSON, for a baseline of the same size
        self.longest_gap = 0.0  # seconds between two batches that brought events
        self.max_backlog = 0  # the most messages graph-changes held at a sample (received or not)
        self._tasks: list[asyncio.Task[None]] = []
        self._to_delete: asyncio.Queue[Any] = asyncio.Queue()

    async def __aenter__(self) -> EventCounter:
        from shared.stores.clients import queue_client

        self._client = queue_client(self._connection, CHANGES_QUEUE)
        await self._client.__aenter__()
        self._tasks = [asyncio.create_task(self._poll()) for _ in range(self._loops)]
        self._tasks += [asyncio.create_task(self._delete()) for _ in range(self._deleters)]
        self._tasks.append(asyncio.create_task(self._watch_backlog()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancelled(*self._tasks)
        await self._client.__aexit__(None, None, None)

    @property
    def distinct(self) -> int:
        """Items with at least one event."""
        return len(self.per_item)

    @property
    def duplicates(self) -> int:
        """Events beyond the first for their item."""
        return self.total - len(self.per_item)

    def _count(self, text: str, arrived: float) -> None:
        event = json.loads(text)
        item, event_id = str(event.get("itemId")), hash(event.get("id"))
        seen = self.per_item.get(item, 0)
        if seen:
            self.repeated_ids += self._first_id[item] == event_id
        else:
            self._first_id[item] = event_id
        self.per_item[item] = seen + 1
        self.change_types[str(event.get("changeType"))] += 1
        self.total += 1
        self.first_at = self.first_at or arrived
        self.last_at = arrived
        self.sample = self.sample or text

    async def _poll(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        while True:
            try:
                batch = [
                    m
                    async for m in self._client.receive_messages(
                        messages_per_page=32, max_messages=32, visibility_timeout=self.HIDE_SECONDS
                    )
                ]
            except ResourceNotFoundError:  # nothing was emitted yet
                batch = []
            arrived = time.monotonic()
            if batch and self.last_at is not None:
                self.longest_gap = max(self.longest_gap, arrived - self.last_at)
            for message in batch:
                self._count(message.content, arrived)
                self._to_delete.put_nowait(message)
            if not batch:
                await asyncio.sleep(0.05)

    async def _delete(self) -> None:
        from azure.core.exceptions import AzureError

        while True:
            message = await self._to_delete.get()
            with contextlib.suppress(AzureError):  # left behind, it only stays invisible
                await self._client.delete_message(message)

    async def _watch_backlog(self) -> None:
        from azure.core.exceptions import AzureError

        while True:
            with contextlib.suppress(AzureError):
                properties = await self._client.get_queue_properties()
                self.max_backlog = max(self.max_backlog, int(properties.approximate_message_count or 0))
            await asyncio.sleep(2)


class QueueCounter(Background):
    """Counts graph-changes by the queue's own message count, reading and deleting nothing.

    Azurite keeps messages in a list that a receive or a delete searches: both cost time
    in proportion to the backlog (32 deletes took 0.1 s with an empty queue, 1.1 s with
    5,000 messages and 4.9 s with 20,000, on its single thread), so a consumer that drains
    a large first pass measures the emulator, not the app. Inserts stay flat. This counter
    has the same fields as EventCounter; ``distinct`` stays None (the events are not read).
    """

    def __init__(self, connection: str, every: float = 0.5) -> None:
        super().__init__()
        self._connection = connection
        self._every = every
        self.total = 0
        self.distinct: int | None = None
        self.repeated_ids = 0
        self.change_types: Counter[str] = Counter()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.sample = ""
        self.longest_gap = 0.0
        self.max_backlog = 0

    async def run(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.stores.clients import queue_client

        async with queue_client(self._connection, CHANGES_QUEUE) as client:
            while True:
                try:
                    count = (await client.get_queue_properties()).approximate_message_count or 0
                except ResourceNotFoundError:
                    count = 0
                now = time.monotonic()
                if count > self.total:
                    if self.last_at is not None:
                        self.longest_gap = max(self.longest_gap, now - self.last_at)
                    self.first_at = self.first_at or now
                    self.last_at = now
                    self.total = self.max_backlog = count
                if not self.sample and count:
                    peeked = await client.peek_messages(max_messages=1)
                    self.sample = peeked[0].content if peeked else ""
                await asyncio.sleep(self._every)
