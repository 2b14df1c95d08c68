"""The signed forward against a real receiver (verifying with the standardwebhooks package) and Azurite."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from devtools.messages import receive_json
from shared.app.sinks import SinkRuntime, build_sinks
from shared.model.names import MAX_DEQUEUE_COUNT
from shared.model.schedule import RetryPolicy
from shared.queues.message_queue import MessageQueue
from shared.sinks.ordering import ORDER_TABLE
from shared.stores.clients import queue_client, table_client
from shared.sync.fanout import EventFanout
from tests.conftest import PAYLOADS
from tests.functional.stacks import DRIVE, subscribed

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT = json.loads((PAYLOADS / "sink-event-created.json").read_text())


@dataclass
class Receiver:
    """A webhook receiver that verifies every request and answers from a script (then 200)."""

    url: str
    script: list[int] = field(default_factory=list)
    down: bool = False
    retry_after: str | None = None  # sent with the 503s while down
    verified: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.text()
        try:
            payload = Webhook(SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.down:
            return web.Response(status=503, headers={"Retry-After": self.retry_after} if self.retry_after else None)
        if self.script:
            status = self.script.pop(0)
            if status >= 400:
                return web.Response(status=status)
        assert request.headers["webhook-id"] == payload["id"]
        self.verified.append(payload)
        return web.Response(status=204)


@pytest.fixture
async def receiver(hook_server: Callable[..., Awaitable[str]]) -> Receiver:
    hook = Receiver("")
    hook.url = await hook_server(hook.handle)
    return hook


def event(**changes: Any) -> dict[str, Any]:
    return {**EVENT, **changes}


async def drain(runtime: SinkRuntime, connection: str, queue: str, until: Callable[[], bool], within: float) -> None:
    """Play the host for a sink queue: handle visible messages; a raise leaves the message for a retry."""
    runner = runtime.runner(queue)
    deadline = time.monotonic() + within
    async with queue_client(connection, queue) as client:
        while time.monotonic() < deadline:
            if until():
                return
            batch = [
                m async for m in client.receive_messages(messages_per_page=16, max_messages=16, visibility_timeout=1)
            ]

            async def one(message: Any) -> None:
                try:
                    await runner.handle(message.content, message.dequeue_count)
                except Exception:  # noqa: BLE001 - like the host: whatever the function raised is retried
                    return
                await client.delete_message(message)

            await asyncio.gather(*(one(m) for m in batch))
            if not batch:
                await asyncio.sleep(0.1)
    if not until():
        raise TimeoutError(f"condition not met in {within} s")


@dataclass
class Clock:
    """The runner's clock: the test moves it to play an outage of hours in seconds."""

    at: datetime = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


async def setup(
    azurite: Any, unique_name: Any, receiver: Receiver, clock: Clock | None = None, tempo: float = 0.1, **entry: Any
) -> tuple[SinkRuntime, str]:
    queue = unique_name("hook")
    sinks = [{"type": "webhook", "url": receiver.url, "secret": SECRET, "name": queue, **entry}]
    env = {"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)}
    return await build_sinks(env, tempo=tempo, clock=clock or Clock()), queue


async def emit(connection: str, changes: str, sink_queue: str, *events: dict[str, Any]) -> None:
    async with queue_client(connection, changes) as c, queue_client(connection, sink_queue) as s:
        outlet = EventFanout(MessageQueue(c), [MessageQueue(s)])
        await outlet.send_all(json.dumps(e) for e in events)


async def test_forward_is_verified_by_standardwebhooks_and_changes_queue_still_gets_it(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    runtime, queue = await setup(azurite, unique_name, receiver)
    changes = unique_name("changes")
    try:
        await emit(azurite.connection_string, changes, queue, EVENT)
        await drain(runtime, azurite.connection_string, queue, lambda: len(receiver.verified) == 1, 10)
    finally:
        await runtime.close()
    assert receiver.verified == [EVENT]
    assert receiver.bad_signatures == 0
    assert await receive_json(azurite.connection_string, changes) == [EVENT]


async def test_500_then_recovery_delivers_once(azurite: Any, unique_name: Any, receiver: Receiver) -> None:
    receiver.script = [500] * 4  # outlasts the in-process retries: the runner re-enqueues
    runtime, queue = await setup(azurite, unique_name, receiver)
    try:
        await emit(azurite.connection_string, unique_name("changes"), queue, EVENT)
        await drain(runtime, azurite.connection_string, queue, lambda: len(receiver.verified) == 1, 15)
    finally:
        await runtime.close()
    assert [e["id"] for e in receiver.verified] == [EVENT["id"]]
    assert receiver.requests == 5
    assert await receive_json(azurite.connection_string, f"{queue}-poison") == []


async def poisoned(connection: str, queue: str) -> list[dict[str, Any]]:
    return await receive_json(connection, f"{queue}-poison")


async def test_a_receiver_down_for_4_minutes_gets_every_event_in_order(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    """Plays the default schedule's tries: at 0, 2, 6, 14, 30, 62, 126 and 254 s the receiver is
    down (the old default, 8 attempts over about 4 minutes, poisoned here); at 510 s it is back."""
    policy = RetryPolicy()
    schedule = [0.0]
    for retries in range(12):
        now = Clock().at + timedelta(seconds=schedule[-1])
        schedule.append(schedule[-1] + (policy.retry_delay(retries, Clock().at, now, None) or 0.0))
    receiver.retry_after = "0"  # no in-process waiting: each try is one quick round
    clock = Clock()
    start = clock.at
    runtime, queue = await setup(azurite, unique_name, receiver, clock, tempo=0.005)
    connection = azurite.connection_string
    deleted = event(id="deleted-1", changeType="deleted", item=None, observedAt="2026-11-22T10:00:05.000000Z")
    tried = 0
    try:
        await emit(connection, unique_name("changes"), queue, EVENT)
        for at in schedule:
            clock.at = start + timedelta(seconds=at)
            receiver.down = at < 4.5 * 60
            if not receiver.down:
                break
            requests = receiver.requests
            await drain(runtime, connection, queue, lambda r=requests: receiver.requests > r, 10)
            tried += 1
            assert await poisoned(connection, queue) == [], f"poisoned after {at:.0f} s"
            if tried == 1:  # the deleted arrives while the created is retried: it waits behind it
                await emit(connection, unique_name("changes"), queue, deleted)
        assert tried == 8 and receiver.verified == []
        await drain(runtime, connection, queue, lambda: len(receiver.verified) == 2, 20)
    finally:
        await runtime.close()
    assert [e["changeType"] for e in receiver.verified] == ["created", "deleted"]
    assert await poisoned(connection, queue) == []


async def test_a_receiver_down_for_hours_gets_every_event_in_order(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    """The clock jumps through a 23 h 50 min outage: the created is retried, the deleted waits, neither is poisoned."""
    receiver.down = True
    clock = Clock()
    start = clock.at
    runtime, queue = await setup(azurite, unique_name, receiver, clock, tempo=0.01)
    connection = azurite.connection_string
    deleted = event(id="deleted-1", changeType="deleted", item=None, observedAt="2026-11-22T10:00:05.000000Z")
    try:
        await emit(connection, unique_name("changes"), queue, EVENT)
        with pytest.raises(TimeoutError):
            await drain(runtime, connection, queue, lambda: False, 1.0)
        await emit(connection, unique_name("changes"), queue, deleted)
        for hours in (3.0, 23.0 + 50 / 60):  # the outage goes on: the created is tried again, the deleted waits
            requests = receiver.requests
            clock.at = start + timedelta(hours=hours)
            await drain(runtime, connection, queue, lambda r=requests: receiver.requests > r, 10)
            assert await poisoned(connection, queue) == []
        assert receiver.verified == []
        receiver.down = False  # back, with the clock at the end of the outage
        await drain(runtime, connection, queue, lambda: len(receiver.verified) == 2, 20)
    finally:
        await runtime.close()
    assert [e["changeType"] for e in receiver.verified] == ["created", "deleted"]
    assert await poisoned(connection, queue) == []


async def test_past_the_horizon_events_are_poisoned_then_replay_delivers(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    receiver.down = True
    clock = Clock()
    runtime, queue = await setup(azurite, unique_name, receiver, clock, retryHours=2)
    connection = azurite.connection_string
    found: list[dict[str, Any]] = []
    try:
        await emit(connection, unique_name("changes"), queue, EVENT)
        with pytest.raises(TimeoutError):
            await drain(runtime, connection, queue, lambda: False, 1.5)
        clock.at += timedelta(hours=1, minutes=59)  # within the horizon: still retried
        with pytest.raises(TimeoutError):
            await drain(runtime, connection, queue, lambda: False, 2.5)
        assert await poisoned(connection, queue) == []
        clock.at += timedelta(minutes=2)  # past it: the next failure poisons
        deadline = time.monotonic() + 15
        while not found and time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                await drain(runtime, connection, queue, lambda: False, 1.0)
            found.extend(await poisoned(connection, queue))
        assert found == [EVENT]
        assert receiver.verified == []
        # The destination is back: replay the poison queue onto the sink's queue.
        receiver.down = False
        async with queue_client(connection, queue) as client:
            await MessageQueue(client).send_all(json.dumps(p) for p in found)
        await drain(runtime, connection, queue, lambda: len(receiver.verified) == 1, 10)
    finally:
        await runtime.close()
    assert receiver.verified == [EVENT]


async def test_storage_trouble_is_retried_like_an_outage_not_poisoned_by_the_host(
    azurite_factory: Any, unique_name: Any, receiver: Receiver
) -> None:
    azurite = azurite_factory()  # a private account: its order table goes missing for a while
    runtime, queue = await setup(azurite, unique_name, receiver)
    connection = azurite.connection_string
    try:
        async with table_client(connection, ORDER_TABLE) as table:
            await table.delete_table()
        await emit(connection, unique_name("changes"), queue, EVENT)
        async with queue_client(connection, queue) as client:
            [message] = [m async for m in client.receive_messages(max_messages=1, visibility_timeout=30)]
            # Even on the host's last attempt, the failure is re-enqueued for later, not poisoned.
            assert await runtime.runner(queue).handle(message.content, MAX_DEQUEUE_COUNT) == "retrying"
            await client.delete_message(message)
        assert await poisoned(connection, queue) == []
        async with table_client(connection, ORDER_TABLE) as table:
            await table.create_table()
        await drain(runtime, connection, queue, lambda: len(receiver.verified) == 1, 15)
    finally:
        await runtime.close()
    assert receiver.verified == [EVENT]


async def test_client_error_poisons_at_once(azurite: Any, unique_name: Any, receiver: Receiver) -> None:
    receiver.script = [400]
    runtime, queue = await setup(azurite, unique_name, receiver)
    connection = azurite.connection_string
    poisoned: list[dict[str, Any]] = []
    try:
        await emit(connection, unique_name("changes"), queue, EVENT)

        async def check() -> bool:
            poisoned.extend(await receive_json(connection, f"{queue}-poison"))
            return bool(poisoned)

        deadline = time.monotonic() + 10
        while not await check() and time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                await drain(runtime, connection, queue, lambda: False, 0.5)
    finally:
        await runtime.close()
    assert poisoned == [EVENT]
    assert receiver.requests == 1


async def test_deleted_never_overtakes_the_created_being_retried(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    receiver.script = [500] * 4  # the created fails until the runner's retry
    runtime, queue = await setup(azurite, unique_name, receiver)
    connection = azurite.connection_string
    created = event()
    deleted = event(id="deleted-1", changeType="deleted", item=None, observedAt="2026-11-22T10:00:05.000000Z")
    try:
        await emit(connection, unique_name("changes"), queue, created)
        # The created is in flight and failing when the deleted arrives.
        with pytest.raises(TimeoutError):
            await drain(runtime, connection, queue, lambda: False, 0.5)
        assert receiver.verified == []
        await emit(connection, unique_name("changes"), queue, deleted)
        await drain(runtime, connection, queue, lambda: len(receiver.verified) == 2, 20)
    finally:
        await runtime.close()
    assert [e["changeType"] for e in receiver.verified] == ["created", "deleted"]


async def test_pipeline_events_reach_the_sink(stack_factory: Any, receiver: Receiver) -> None:
    sinks = [{"type": "webhook", "url": receiver.url, "secret": SECRET, "name": "pipeline-hook"}]
    stack = await subscribed(stack_factory, env={"SINKS": json.dumps(sinks)})
    runtime = await build_sinks(stack.env)
    try:
        item = await stack.control.create_item(DRIVE, "report.docx", "v1")
        await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
        wanted = len(stack.events)  # the file's event, and the root folder's from the first pass
        await drain(runtime, stack.connection, "pipeline-hook", lambda: len(receiver.verified) == wanted, 10)
    finally:
        await runtime.close()
    by_id = {e["id"]: e for e in receiver.verified}
    assert by_id == {e["id"]: e for e in stack.events}
    assert stack.for_item(item["id"])[0]["id"] in by_id
