"""A notification put off while its subscription already has a message waiting rides on that message.

Against Azurite: the join is storage's update of the waiting message, which succeeds only
while nobody has received it since it was sent; every way it can fail leaves the
notification on a message of its own, or raises so that its own message is retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from devtools.azurite import Azurite
from devtools.messages import peek_count
from shared.clock import utcnow
from shared.errors import StorageUnavailableError
from shared.model.notifications import Envelope
from shared.queues.message_queue import MessageQueue
from shared.queues.waiting import WaitingMessages
from shared.stores.clients import queue_client

QUEUE = "waiting-test"
KEY = "tenant-b|drives:d1:root|updated"
STARTED = utcnow().replace(microsecond=0)


def later(seconds: int, deferrals: int = 1) -> Envelope:
    """A put-off notification that asks for a pass, stored ``seconds`` after STARTED."""
    item = {"subscriptionId": "sub-1", "changeType": "updated", "resource": "drives/d1/root"}
    at = STARTED + timedelta(seconds=seconds)
    return Envelope("notifications", at, [item], deferrals=deferrals, notified_at=at)


class Clock:
    """A monotonic clock the test moves; storage keeps its own (real) time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def azurite(azurite_factory: Any) -> Azurite:
    return azurite_factory(persistent=True)  # type: ignore[no-any-return]


@pytest.fixture
async def queue(azurite: Azurite) -> AsyncIterator[tuple[MessageQueue, str]]:
    # One retry: the outage test should see storage fail in a second, not after the SDK's minute of retries.
    client = queue_client(azurite.connection_string, QUEUE, retry_total=1, initial_backoff=0.1)
    async with client:
        yield MessageQueue(client), azurite.connection_string


async def visible(connection: str, wait: float = 0.0, count: int = 1) -> list[tuple[Any, dict[str, Any]]]:
    """The queue's messages once visible, received (hidden for a minute) and decoded.

    Looks after ``wait`` seconds (when they are due), then until ``count`` came or 10 s more
    passed: a loaded box may be late, and nothing the tests tell apart is due within 10 s of another.
    """
    await asyncio.sleep(wait)
    deadline = time.monotonic() + 10
    messages: list[Any] = []
    async with queue_client(connection, QUEUE) as client:
        while True:
            messages += [m async for m in client.receive_messages(max_messages=32, visibility_timeout=60)]
            if len(messages) >= count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    return [(m, json.loads(m.content)) for m in messages]


def notified_at(body: dict[str, Any]) -> datetime:
    return Envelope.from_json(json.dumps(body)).notified_at or datetime.min


async def test_notifications_put_off_while_one_waits_leave_one_message_carrying_the_latest_time(queue):
    messages, connection = queue
    waiting = WaitingMessages(messages)

    assert await waiting.put_off(KEY, later(0), 3) is False
    assert await waiting.put_off(KEY, later(5), 3) is True
    assert await waiting.put_off(KEY, later(9), 3) is True

    assert await peek_count(connection, QUEUE) == 1
    [(_, body)] = await visible(connection, wait=3.5)
    # The waiting message's own items and deferrals, with the time a covering pass must start after moved on.
    assert notified_at(body) == STARTED + timedelta(seconds=9)
    assert body["deferrals"] == 1 and [i["subscriptionId"] for i in body["value"]] == ["sub-1"]


async def test_each_subscription_has_its_own_waiting_message(queue):
    messages, connection = queue
    waiting = WaitingMessages(messages)

    assert await waiting.put_off(KEY, later(0), 2) is False
    assert await waiting.put_off("tenant-b|drives:d2:root|updated", later(1), 2) is False
    assert await waiting.put_off(KEY, later(2), 2) is True

    assert sorted(notified_at(b) for _, b in await visible(connection, wait=2.5, count=2)) == [
        STARTED + timedelta(seconds=1),
        STARTED + timedelta(seconds=2),
    ]


async def test_a_joiner_pulls_a_far_off_message_in_to_the_horizon(queue):
    messages, connection = queue
    waiting = WaitingMessages(messages, horizon=2)

    await waiting.put_off(KEY, later(0, deferrals=6), 300)  # a long backoff, late in a storm
    assert await waiting.put_off(KEY, later(7), 1) is True

    [(_, body)] = await visible(connection, wait=2.5)
    assert notified_at(body) == STARTED + timedelta(seconds=7)
    # Put off again, it backs off from the joiner's count (1), not its own (6): back in seconds, not minutes.
    assert body["deferrals"] == 1


async def test_a_waiting_message_received_meanwhile_is_not_joined(queue):
    messages, connection = queue
    clock = Clock()
    waiting = WaitingMessages(messages, monotonic=clock)
    await waiting.put_off(KEY, later(0), 1)
    # Another instance receives it (its pass may start before the next notification was stored) ...
    [(taken, _)] = await visible(connection, wait=1.5)
    clock.now -= 10  # ... while this instance still counts it as waiting

    assert await waiting.put_off(KEY, later(5), 1) is False
    assert await peek_count(connection, QUEUE) == 2  # the taken one, and the notification on its own
    [(_, body)] = await visible(connection, wait=1.5)
    assert notified_at(body) == STARTED + timedelta(seconds=5)
    assert taken.content == later(0).to_json()  # the taken message was not updated under its receiver


async def test_a_waiting_message_deleted_meanwhile_is_not_joined(queue):
    messages, connection = queue
    clock = Clock()
    waiting = WaitingMessages(messages, monotonic=clock)
    await waiting.put_off(KEY, later(0), 1)
    [(taken, _)] = await visible(connection, wait=1.5)
    async with queue_client(connection, QUEUE) as client:
        await client.delete_message(taken)
    clock.now -= 10

    assert await waiting.put_off(KEY, later(5), 1) is False
    [(_, body)] = await visible(connection, wait=1.5)
    assert notified_at(body) == STARTED + timedelta(seconds=5)


async def test_a_message_due_within_a_second_is_not_joined(queue):
    messages, connection = queue
    clock = Clock()
    waiting = WaitingMessages(messages, monotonic=clock)
    await waiting.put_off(KEY, later(0), 30)
    clock.now += 29.5  # it may be received while an update is on its way

    assert await waiting.put_off(KEY, later(5), 1) is False
    assert await peek_count(connection, QUEUE) == 2


async def test_a_storage_outage_while_joining_raises_and_changes_nothing(queue, azurite):
    messages, connection = queue
    waiting = WaitingMessages(messages)
    await waiting.put_off(KEY, later(0), 3)
    azurite.stop()
    try:
        with pytest.raises(StorageUnavailableError):
            await waiting.put_off(KEY, later(5), 3)
    finally:
        azurite.start()

    # The joiner's own message is retried by the host; the waiting message is as it was.
    [(_, body)] = await visible(connection, wait=3.5)
    assert notified_at(body) == STARTED
    # The next one does not trust a message whose update may or may not have happened: it goes on its own.
    assert await waiting.put_off(KEY, later(8), 1) is False


async def test_joining_twice_after_a_crash_before_the_delete_still_leaves_one_message(queue):
    messages, connection = queue
    waiting = WaitingMessages(messages)
    await waiting.put_off(KEY, later(0), 3)

    # The joiner's message was not deleted (the instance died after the update): it comes back and joins again.
    assert await waiting.put_off(KEY, later(5), 3) is True
    assert await waiting.put_off(KEY, later(5), 3) is True

    [(_, body)] = await visible(connection, wait=3.5)
    assert notified_at(body) == STARTED + timedelta(seconds=5)


async def test_the_oldest_subscription_is_forgotten_past_the_limit(queue):
    messages, connection = queue
    waiting = WaitingMessages(messages, limit=2)
    for n in range(3):
        await waiting.put_off(f"key-{n}", later(n), 30)

    assert len(waiting) == 2
    assert await waiting.put_off("key-0", later(9), 30) is False  # forgotten: on its own message
    assert await waiting.put_off("key-2", later(9), 30) is True
    assert await peek_count(connection, QUEUE) == 4
