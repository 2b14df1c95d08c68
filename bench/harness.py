"""What every benchmark needs: a private stack (or Azurite, or server) that is always stopped, and subscriptions on it.

Each helper starts what a benchmark measures against and stops it however the benchmark
ends: ``running_stack`` (Azurite, the Graph simulator and the local host), ``own_azurite``,
``serving`` (a local aiohttp app), ``Background`` (a task for the body's duration).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from devtools.azurite import ROOT, Azurite, start_azurite
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


@contextlib.asynccontextmanager
async def own_azurite(location: Path | None = None) -> AsyncIterator[Azurite]:
    """An Azurite of its own (in memory unless ``location``), stopped however the body ends."""
    # Started in a thread: it blocks while the emulator comes up.
    azurite = await asyncio.to_thread(start_azurite, location)
    try:
        yield azurite
    finally:
        await asyncio.to_thread(azurite.stop)


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[str]:
    """``app`` listening on 127.0.0.1:``port`` until the body ends; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def cancelled(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until they have ended."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Background:
    """Runs a coroutine as a task from the start of an ``async with`` body to its end, then cancels it.

    A subclass may give ``run`` instead of a coroutine: the loop it keeps up while it is entered.
    """

    def __init__(self, work: Coroutine[Any, Any, None] | None = None) -> None:
        self._work = work
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """The work, when none was given."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._work if self._work is not None else self.run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await cancelled(self._task)


async def make_drives(control: SimControl, drives: dict[str, dict[str, str]]) -> None:
    """Create the drives (id -> owners: userId or siteId) in the simulator, 32 at a time."""
    gate = asyncio.Semaphore(32)

    async def make(drive: str, owners: dict[str, str]) -> None:
        async with gate:
            await control.create_drive(drive, **owners)

    await asyncio.gather(*(make(d, owners) for d, owners in drives.items()))


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
