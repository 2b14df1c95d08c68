"""What every benchmark needs: a private stack that is always stopped, and subscriptions on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from devtools.azurite import ROOT
from devtools.simclient import SimControl
from devtools.stack import LocalStack, start_stack

RUN_ROOT = ROOT / ".run" / "bench"
CHANGES_QUEUE = "graph-changes"
NOTIFICATIONS_QUEUE = "graph-notifications"
# The queue trigger stays off where it would compete with the code being measured for the 2 cores.
PROCESS_DISABLED = {"AzureWebJobs.process.Disabled": "true"}


def drive_subscriptions(drives: list[str]) -> list[dict[str, str]]:
    """GRAPH_SUBSCRIPTIONS entries for the roots of ``drives``."""
    return [{"resource": f"drives/{drive}/root"} for drive in drives]


@contextlib.asynccontextmanager
async def running_stack(name: str, **options: Any) -> AsyncIterator[LocalStack]:
    """A stack of its own under .run/bench/, stopped (processes and files) however the body ends."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RUN_ROOT))
    # Started in a thread: start_stack blocks while the processes come up.
    stack = await asyncio.to_thread(start_stack, run_dir, **options)
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)
        shutil.rmtree(run_dir, ignore_errors=True)


async def wait_until(check: Callable[[], Awaitable[bool]], limit: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until it holds; return the seconds it took, raise TimeoutError after ``limit`` s."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > limit:
            raise TimeoutError(f"gave up after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def active_secrets(connection: str) -> dict[str, str]:
    """Subscription id → clientState of the records the app stored (what its HTTP path checks)."""
    from shared.model.names import SUBSCRIPTIONS_TABLE
    from shared.stores.clients import table_client
    from shared.stores.subscriptions import SubscriptionStore

    async with table_client(connection, SUBSCRIPTIONS_TABLE) as client:
        records = await SubscriptionStore(client).list()
    return {r.subscription_id: r.client_state for r in records if r.subscription_id}


async def subscribe_via_host(stack: LocalStack, control: SimControl, count: int) -> list[dict[str, Any]]:
    """Run the host's renew timer once and wait until ``count`` subscriptions exist and are stored.

    The drives must exist already. Returns the simulator's subscriptions (with clientState).
    """
    await asyncio.to_thread(stack.run_function, "renew")
    connection = stack.azurite.connection_string

    async def ready() -> bool:
        with contextlib.suppress(Exception):  # the table appears only once renew has started
            return len(await active_secrets(connection)) >= count and len(await control.subscriptions()) >= count
        return False

    await wait_until(ready, limit=90, what=f"{count} subscriptions", every=0.2)
    return await control.subscriptions()


# A duplicate notification that meets a pass of several pages waits MAX_DEFER (30 s), then
# one more, usually empty, pass covers it; a copy that loses that pass's lease race waits its
# back-off (at most MAX_DEFER) once more. Beyond two of them and the passes, something is stuck.
SETTLE_LIMIT = 180.0


async def quiet(stack: LocalStack, control: SimControl, limit: float = SETTLE_LIMIT) -> float:
    """Wait until the simulator has nothing left to deliver and the notifications queue is empty.

    Empty means no message at all, invisible ones included: a deferred notification is
    work still to do (it may cost a delta run), so it counts. Returns the seconds waited.
    """
    from devtools.messages import peek_count

    connection = stack.azurite.connection_string

    async def settled() -> bool:
        pending = (await control.stats())["delivery"].get("pending", 0)
        return not pending and await peek_count(connection, NOTIFICATIONS_QUEUE) == 0

    return await wait_until(settled, limit, "the pipeline to settle", every=0.2)


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


class ChangeWatcher:
    """Takes every event off graph-changes as it arrives and notes when it arrived.

    One long-lived client polling without pause: a fresh client per poll (as
    devtools.messages.receive_json makes) would add its set-up to every timestamp.
    """

    def __init__(self, connection: str) -> None:
        self._connection = connection
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> ChangeWatcher:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def count(self, change_type: str, item_ids: set[str] | None = None) -> int:
        """How many distinct items have had a ``change_type`` event (among ``item_ids``, if given)."""
        seen = {e["itemId"] for _, e in self.arrivals if e.get("changeType") == change_type}
        return len(seen if item_ids is None else seen & item_ids)

    async def _poll(self) -> None:
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


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``), or its peak so far (``VmHWM``), from /proc; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def host_pid(stack: LocalStack) -> int:
    """The pid of the stack's local host, the one process that runs every function."""
    if stack.host is None or stack.host.process is None:
        raise RuntimeError("the stack has no host running")
    return stack.host.process.pid


class RssSampler:
    """Samples the host's resident memory every ``every`` s; follows the host across a restart.

    ``peak`` is the highest sample; the kernel's own high-water mark (VmHWM) of the
    current process is folded in at each sample, so a spike between samples counts too.
    """

    def __init__(self, stack: LocalStack, every: float = 0.5) -> None:
        self._stack = stack
        self._every = every
        self.peak = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        with contextlib.suppress(RuntimeError):  # between a kill and the restart there is no host
            pid = host_pid(self._stack)
            self.peak = max(self.peak, rss_bytes(pid), rss_bytes(pid, "VmHWM"))
            self.samples += 1

    async def _sample(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._every)


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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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


async def raw_send_rate(connection: str, text: str, count: int, senders: int = 16) -> float:
    """Messages per second of ``senders`` concurrent send_message calls on one client (after a warm-up)."""
    from shared.stores.clients import queue_client

    async with queue_client(connection, "bench-raw-sends") as client:
        await client.create_queue()

        async def send(n: int) -> None:
            gate = asyncio.Semaphore(senders)

            async def one() -> None:
                async with gate:
                    await client.send_message(text)

            await asyncio.gather(*(one() for _ in range(n)))

        await send(max(count // 10, 50))
        started = time.perf_counter()
        await send(count)
        seconds = time.perf_counter() - started
        await client.delete_queue()
    return count / seconds


async def raw_transaction_rate(connection: str, entities: int, concurrent: int = 4) -> float:
    """Entities per second upserted in transactions of 100, ``concurrent`` transactions at once.

    The rows are shaped like the item index's and go to one partition, as a drive's do.
    """
    from shared.stores.clients import table_client

    def batch(start: int) -> list[tuple[str, dict[str, Any]]]:
        return [
            (
                "upsert",
                {
                    "PartitionKey": "bench-raw",
                    "RowKey": f"item-{n:09d}",
                    "ItemId": f"item-{n:09d}",
                    "Version": '"{0123456789ABCDEF},1"',
                    "Deleted": False,
                    "Pass": "0123456789abcdef0123456789abcdef",
                },
            )
            for n in range(start, start + 100)
        ]

    async with table_client(connection, "benchrawtransactions") as client:
        await client.create_table()
        gate = asyncio.Semaphore(concurrent)

        async def one(start: int) -> None:
            async with gate:
                await client.submit_transaction(batch(start))  # type: ignore[arg-type]

        await asyncio.gather(*(one(n) for n in range(0, max(entities // 10, 500), 100)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(10_000_000, 10_000_000 + entities, 100)))
        seconds = time.perf_counter() - started
        await client.delete_table()
    return entities / seconds


class QueueCounter:
    """Counts graph-changes by the queue's own message count, reading and deleting nothing.

    Azurite keeps messages in a list that a receive or a delete searches: both cost time
    in proportion to the backlog (32 deletes took 0.1 s with an empty queue, 1.1 s with
    5,000 messages and 4.9 s with 20,000, on its single thread), so a consumer that drains
    a large first pass measures the emulator, not the app. Inserts stay flat. This counter
    has the same fields as EventCounter; ``distinct`` stays None (the events are not read).
    """

    def __init__(self, connection: str, every: float = 0.5) -> None:
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
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> QueueCounter:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
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
