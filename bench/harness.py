"""What every benchmark needs: a private stack that is always stopped, and subscriptions on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
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
    from shared.services import SUBSCRIPTIONS_TABLE
    from shared.storage import table_client
    from shared.subscriptions import SubscriptionStore

    async with table_client(connection, SUBSCRIPTIONS_TABLE) as client:
        return await SubscriptionStore(client).secrets()


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


async def quiet(stack: LocalStack, control: SimControl, limit: float = 60) -> None:
    """Wait until the simulator has nothing left to deliver and the notifications queue is empty."""
    from devtools.messages import peek_count

    connection = stack.azurite.connection_string

    async def settled() -> bool:
        pending = (await control.stats())["delivery"].get("pending", 0)
        return not pending and await peek_count(connection, NOTIFICATIONS_QUEUE) == 0

    await wait_until(settled, limit, "the pipeline to settle", every=0.2)


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

        from shared.storage import queue_client

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
