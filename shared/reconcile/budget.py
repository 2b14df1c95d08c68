"""A sliding-window budget for Graph's subscription writes.

Graph allows 500 subscription writes (POST, PATCH, DELETE) per 20 s per app and
tenant, counted in a sliding window. A leaky bucket would allow a burst plus a
rate, up to twice the limit in one window; this budget instead counts each write
from the moment it starts until ``window`` after it completes. Graph counts a
write when it arrives, which is between those two moments, so every window Graph
can see holds at most ``limit`` writes, with no margin to guess.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

GRAPH_SUBSCRIPTION_WRITES = 500
GRAPH_WINDOW_SECONDS = 20.0


class WriteBudget:
    """At most ``limit`` writes in flight or completed within the last ``window`` seconds."""

    def __init__(
        self,
        limit: int = GRAPH_SUBSCRIPTION_WRITES,
        window: float = GRAPH_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._in_flight = 0
        self._completed: deque[float] = deque()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until a write fits the budget, then hold its place while it runs."""
        async with self._changed:
            while True:
                now = self._clock()
                while self._completed and self._completed[0] <= now - self._window:
                    self._completed.popleft()
                if self._in_flight + len(self._completed) < self._limit:
                    break
                # Wake when the oldest completion leaves the window, or when a write completes.
                wait = self._completed[0] + self._window - now if self._completed else self._window
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            self._in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._completed.append(self._clock())
                self._changed.notify_all()
