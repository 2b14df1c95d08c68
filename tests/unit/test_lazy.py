"""Lazy: the parts a process builds on first use."""

from __future__ import annotations

import gc

from shared.app.lazy import Lazy

BUILT = 50_000


async def test_what_a_lazy_value_builds_is_left_out_of_full_collections():
    # A full collection walks every tracked object and stops the process meanwhile. Over the HTTP
    # path's 67,000 objects (its SDKs, the host's) that was 40 ms of CPU, 110-170 ms on a busy box,
    # twice per 2,000 requests at 32 senders: 3% of the requests waited for it, which made the p99
    # (python -m bench --only ingest, "during a full (gen 2) collection").
    async def build() -> list[list[int]]:
        return [[n] for n in range(BUILT)]  # tracked containers that live as long as the process, as clients do

    before = gc.get_freeze_count()
    try:
        value = await Lazy(build).get()

        assert len(value) == BUILT
        assert gc.get_freeze_count() >= before + BUILT, "kept out of every later full collection"
    finally:
        gc.unfreeze()  # this test's process is pytest's: leave its collections as they were
