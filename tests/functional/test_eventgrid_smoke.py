"""End to end over real HTTP: the simulator's Event Grid delivery -> the local host's webhook -> a function.

The simulator runs in-process, the host as a subprocess on a throwaway app (eventgrid_support.RECORDING_APP)
that records each event it is handed and fails while told to.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from devtools.eventgrid_control import EventGridControl
from devtools.graphsim.config import SimConfig
from devtools.graphsim.server import start
from devtools.simclient import SimControl
from tests.functional.eventgrid_support import (
    eventgrid_url,
    records,
    start_host,
    stop_host,
    subscribe,
    write_app,
)

pytestmark = pytest.mark.timeout(60)


async def _records(path: Path, count: int) -> list[dict[str, object]]:
    for _ in range(1000):
        got = records(path)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(records(path))} of {count} records")


async def test_a_change_reaches_the_function_as_a_cloud_event_and_a_failure_is_redelivered(tmp_path: Path) -> None:
    record, fail = tmp_path / "record.jsonl", tmp_path / "fail.txt"
    host = start_host(write_app(tmp_path / "app", record, fail), tmp_path)
    sim = await start(SimConfig(eventgrid_retry_scale=0.01))  # 10 s -> 0.1 s, 30 s -> 0.3 s, 60 s -> 0.6 s
    try:
        sub = await subscribe(sim, "users", "updated", eventgrid_url(), clientState="cs")
        async with SimControl(sim.control_url) as ctl:
            await EventGridControl(ctl).activate(eventgrid_url(), host.webhook("record"))
            user = await ctl.create_user(displayName="Ada")
            [first] = await _records(record, 1)
            assert first["class"] == "CloudEvent" and first["type"] == "Microsoft.Graph.UserUpdated"
            assert first["subject"] == f"Users/{user['id']}"
            assert first["data"]["subscriptionId"] == sub["id"] and first["data"]["clientState"] == "cs"

            fail.write_text("3")  # the function fails three times, then succeeds
            await ctl.update_directory_object("users", user["id"], displayName="Ada L.")
            got = (await _records(record, 5))[1:]
            for _ in range(500):  # the function recorded before the host answered the simulator
                [topic] = await EventGridControl(ctl).topics()
                if topic["pending"] == 0:
                    break
                await asyncio.sleep(0.01)
        assert [r["failed"] for r in got] == [True, True, True, False]
        assert len({r["id"] for r in got}) == 1, "Event Grid redelivers the same event"
        gaps = [float(b["at"]) - float(a["at"]) for a, b in itertools.pairwise(got)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.29 and gaps[2] >= 0.59, gaps
        assert topic["delivered"] == 2 and topic["deadLettered"] == 0
    finally:
        await sim.close()
        stop_host(host)
