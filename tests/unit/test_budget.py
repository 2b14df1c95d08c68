"""The sliding-window write budget that keeps renewals under Graph's limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.reconcile.budget import WriteBudget

LIMIT = 5
WINDOW = 0.3


async def run_writes(budget: WriteBudget, count: int, duration: float) -> list[tuple[float, float]]:
    """Run ``count`` writes concurrently; return each one's (start, end) times."""
    spans: list[tuple[float, float]] = []

    async def write() -> None:
        async with budget.slot():
            start = time.monotonic()
            await asyncio.sleep(duration)
            spans.append((start, time.monotonic()))

    await asyncio.gather(*(write() for _ in range(count)))
    return spans


def busiest_window(spans: list[tuple[float, float]], window: float) -> int:
    """The most writes a server could have received within any ``window`` (arrival between start and end)."""
    # Worst case for the server: every write arrives at its start; count starts in each window.
    starts = sorted(start for start, _ in spans)
    return max(sum(1 for s in starts if first <= s < first + window) for first in starts)


async def test_never_more_than_the_limit_in_any_window():
    spans = await run_writes(WriteBudget(LIMIT, WINDOW), count=17, duration=0.01)
    assert len(spans) == 17
    assert busiest_window(spans, WINDOW) <= LIMIT


async def test_a_write_waits_until_a_completion_leaves_the_window():
    spans = await run_writes(WriteBudget(LIMIT, WINDOW), count=LIMIT + 1, duration=0.01)
    first_end = min(end for _, end in spans)
    last_start = max(start for start, _ in spans)
    assert last_start >= first_end + WINDOW - 0.01


async def test_writes_within_the_limit_do_not_wait():
    started = time.monotonic()
    await run_writes(WriteBudget(LIMIT, WINDOW), count=LIMIT, duration=0.01)
    assert time.monotonic() - started < WINDOW


@pytest.mark.parametrize("duration", [0.0, 0.05])
async def test_long_running_writes_count_while_in_flight(duration):
    # Writes still running hold their place: the next one may not start before the window after them.
    spans = await run_writes(WriteBudget(2, WINDOW), count=4, duration=duration)
    ends = sorted(end for _, end in spans)
    third_start = sorted(start for start, _ in spans)[2]
    assert third_start >= ends[0] + WINDOW - 0.01
