"""Graph's subscription write limit as the renewal benchmarks meet it: a slow, sampled simulator and a reconciler.

The simulator adds WRITE_LATENCY_MS to every subscription write, as real Graph takes
about 100-400 ms; the reconciler runs in this process, built by shared.app.worker.build_worker
from the stack's settings, and a small server here answers the validation handshakes that
creation triggers (no host runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.simclient import SimControl
from devtools.stack import LocalStack
from shared.app.worker import Worker, build_worker
from shared.reconcile.budget import GRAPH_WINDOW_SECONDS as WINDOW_SECONDS

from .harness import Background, running_stack, serving

WRITE_LATENCY_MS = 200
GRAPH_LIMIT = 500  # subscription writes per 20 s per tenant


@dataclass
class WriteLog:
    """The simulator's write counters sampled over time, for the busiest 20 s window."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (time, writes, throttled)

    def between(self, start: float, end: float) -> list[tuple[float, int, int]]:
        """Samples taken from ``start`` to ``end``."""
        return [s for s in self.samples if start <= s[0] <= end]

    def peak(self, start: float, end: float, window: float = WINDOW_SECONDS) -> int:
        """Most writes in any ``window`` seconds between ``start`` and ``end`` (sampling may miss a few)."""
        chosen = self.between(start - window, end)
        best = 0
        first = 0
        for time_i, writes_i, _ in chosen:
            while chosen[first][0] < time_i - window:
                first += 1
            best = max(best, writes_i - chosen[first][1])
        return best

    def counts(self, start: float, end: float) -> tuple[int, int]:
        """Writes and throttled answers between ``start`` and ``end``."""
        inside = self.between(start, end)
        if len(inside) < 2:
            return 0, 0
        return inside[-1][1] - inside[0][1], inside[-1][2] - inside[0][2]


async def sample_writes(control: SimControl, log: WriteLog) -> None:
    """Read the simulator's write counters four times a second until cancelled."""
    while True:
        stats = await control.stats()
        log.samples.append((time.monotonic(), stats["subscriptionWrites"], stats["throttled"]))
        await asyncio.sleep(0.25)


def handshake_server(port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """Answer Graph's validation handshake on the stack's host port (no host runs here)."""

    async def answer(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        return web.Response(text=token) if token is not None else web.Response(status=202)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    return serving(app, port)


def floor_seconds(count: int, latency: float, concurrency: int, limit: int = GRAPH_LIMIT) -> float:
    """The least time ``count`` writes can take with ``limit`` per 20 s sliding window (no margin)."""
    full_windows, rest = divmod(count, limit)
    if rest == 0:
        full_windows, rest = full_windows - 1, limit
    return full_windows * WINDOW_SECONDS + -(-rest // concurrency) * latency


@contextlib.asynccontextmanager
async def reconciler_under_limit(
    name: str, log: WriteLog, seed: Callable[[SimControl], Awaitable[None]], **options: Any
) -> AsyncIterator[tuple[LocalStack, SimControl, Worker]]:
    """A stack with no host whose simulator takes WRITE_LATENCY_MS per subscription write, seeded by ``seed``,
    and a reconciler built from its settings; the simulator's write counters go to ``log`` meanwhile."""
    sim_options = ("--write-latency-ms", str(WRITE_LATENCY_MS))
    async with (
        running_stack(name, sim_options=sim_options, with_host=False, **options) as stack,
        SimControl(stack.sim.control_url) as control,
        handshake_server(stack.host_port),
    ):
        await seed(control)
        worker = await build_worker(stack.env)
        try:
            async with Background(sample_writes(control, log)):
                await asyncio.sleep(0.5)
                yield stack, control, worker
        finally:
            await worker.close()
