"""Teams summaries against a local stand-in for the Workflows URL and Azurite."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from devtools.azurite import free_port
from devtools.messages import receive_json
from shared.app.sinks import build_sinks
from tests.functional.test_sinks_webhook import EVENT, drain, emit

# Enough for a burst, small enough to stay within the window on a shared machine's Azurite.
BURST = 200


@dataclass
class Workflows:
    """Answers like a Workflows trigger (202), after the scripted throttling answers."""

    url: str
    throttle: list[str] = field(default_factory=list)  # Retry-After values to answer 429 with
    cards: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        if self.throttle:
            return web.Response(status=429, headers={"Retry-After": self.throttle.pop(0)})
        self.cards.append(await request.json())
        return web.Response(status=202)


@pytest.fixture
async def workflows() -> AsyncIterator[Workflows]:
    port = free_port()
    stand_in = Workflows(f"http://127.0.0.1:{port}/workflows/trigger")
    app = web.Application()
    app.router.add_post("/workflows/trigger", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield stand_in
    await runner.cleanup()


async def test_a_burst_becomes_one_card(azurite: Any, unique_name: Any, workflows: Workflows) -> None:
    queue = unique_name("cards")
    sinks = [{"type": "teams", "url": workflows.url, "name": queue, "windowSeconds": 10}]
    runtime = await build_sinks({"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)})
    burst = [
        {**EVENT, "id": f"burst-{n}", "itemId": f"item-{n}", "item": {**EVENT["item"], "name": f"f{n:03}.txt"}}
        for n in range(BURST)
    ]
    try:
        await emit(azurite.connection_string, unique_name("changes"), queue, *burst)
        await drain(runtime, azurite.connection_string, queue, lambda: bool(workflows.cards), 60)
        # Nothing else is pending: replaying the flush posts no second card.
        with pytest.raises(TimeoutError):
            await drain(runtime, azurite.connection_string, queue, lambda: len(workflows.cards) > 1, 1)
    finally:
        await runtime.close()
    (message,) = workflows.cards
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"
    texts = [block.get("text") for block in attachment["content"]["body"]]
    assert f"{BURST} changes" in texts
    assert EVENT["resource"] in texts
    assert {"title": "created", "value": str(BURST)} in attachment["content"]["body"][2]["facts"]


async def test_throttled_card_waits_for_retry_after(azurite: Any, unique_name: Any, workflows: Workflows) -> None:
    workflows.throttle = ["1", "1", "1"]  # outlasts the in-process retries: the runner re-enqueues
    queue = unique_name("cards")
    sinks = [{"type": "teams", "url": workflows.url, "name": queue, "windowSeconds": 1}]
    runtime = await build_sinks({"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)})
    try:
        await emit(azurite.connection_string, unique_name("changes"), queue, EVENT)
        await drain(runtime, azurite.connection_string, queue, lambda: bool(workflows.cards), 20)
    finally:
        await runtime.close()
    assert len(workflows.cards) == 1
    gaps = [later - earlier for earlier, later in zip(workflows.times, workflows.times[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps)
    assert await receive_json(azurite.connection_string, f"{queue}-poison") == []
