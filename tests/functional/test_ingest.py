"""The HTTP path against a real Azurite: what is stored, what is refused, and when it answers 503."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.azurite import Azurite, free_port
from devtools.messages import receive_json
from shared.ingest import Ingest, SecretBook
from shared.notifications import MAX_MESSAGE_JSON_BYTES
from shared.queues import MessageQueue
from shared.storage import queue_client, table_client
from shared.subscriptions import ACTIVE, SubscriptionRecord, SubscriptionStore

SUBSCRIPTION_ID = "0f3b1b6e-3b35-4a3e-8b3e-6f1d2a1c9f01"
SECRET = "s3cret-client-state"


def notification(subscription_id: str = SUBSCRIPTION_ID, client_state: str = SECRET, **extra: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": "2026-12-20T11:00:00.0000000Z",
        "changeType": "updated",
        "resource": "drives/b!drive/root",
        "clientState": client_state,
        "tenantId": "11111111-1111-1111-1111-111111111111",
    }
    item.update(extra)
    return item


def unreachable_queue() -> str:
    """A connection string whose queue endpoint has nothing listening."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"QueueEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


async def read_all(connection: str, queue: str) -> list[dict[str, Any]]:
    """Every message on ``queue``, decoded as the Functions host would (base64 JSON)."""
    return await receive_json(connection, queue)


@pytest.fixture
async def ingest_factory(
    azurite: Azurite, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[tuple[Ingest, str]]]]:
    """Build an Ingest over a fresh table (holding one subscription) and a fresh queue."""
    clients = AsyncExitStack()

    async def make(connection: str | None = None) -> tuple[Ingest, str]:
        table, queue = unique_name("subs"), unique_name("notes")
        store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
        await store.setup()
        now = datetime.now(UTC)
        await store.save(
            SubscriptionRecord(
                "drives:x:root|updated", "drives/x/root", "updated", SECRET, ACTIVE, now, SUBSCRIPTION_ID
            )
        )
        target = await clients.enter_async_context(
            queue_client(connection or azurite.connection_string, queue, retry_total=0)
        )
        return Ingest(SecretBook(store.secrets), MessageQueue(target)), queue

    async with clients:
        yield make


async def test_valid_notification_is_stored_once_without_its_client_state(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    reply = await ingest.accept(batch(notification()))
    assert reply.status == 202
    messages = await read_all(azurite.connection_string, queue)
    assert len(messages) == 1
    stored = messages[0]["value"]
    assert [item["subscriptionId"] for item in stored] == [SUBSCRIPTION_ID]
    assert "clientState" not in stored[0]
    assert messages[0]["source"] == "notifications"


async def test_message_is_base64_as_the_functions_host_expects(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    await ingest.accept(batch(notification()))
    from azure.storage.queue.aio import QueueClient

    raw = QueueClient.from_connection_string(azurite.connection_string, queue)  # no decoding: the raw text
    async with raw:
        [message] = [m async for m in raw.receive_messages()]
    assert json.loads(base64.b64decode(message.content))["value"][0]["subscriptionId"] == SUBSCRIPTION_ID


async def test_wrong_client_state_is_not_enqueued(azurite, ingest_factory, caplog):
    ingest, queue = await ingest_factory()
    reply = await ingest.accept(batch(notification(client_state="forged")))
    assert reply.status == 202
    assert await read_all(azurite.connection_string, queue) == []
    assert "clientState mismatch" in caplog.text
    assert "forged" not in caplog.text and SECRET not in caplog.text


async def test_unknown_subscription_is_not_enqueued(azurite, ingest_factory, caplog):
    ingest, queue = await ingest_factory()
    reply = await ingest.accept(batch(notification(subscription_id="not-ours")))
    assert reply.status == 202
    assert await read_all(azurite.connection_string, queue) == []
    assert "unknown subscription" in caplog.text


async def test_mixed_batch_keeps_only_the_valid_items(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    reply = await ingest.accept(batch(notification(), notification(client_state="bad"), notification("other")))
    assert reply.status == 202
    [message] = await read_all(azurite.connection_string, queue)
    assert len(message["value"]) == 1


@pytest.mark.parametrize("body", [b"{not json", b'{"items": []}', b"", b'{"value": []}', b'{"value": [1]}'])
async def test_malformed_body_is_refused_with_400_and_nothing_stored(azurite, ingest_factory, body):
    ingest, queue = await ingest_factory()
    reply = await ingest.accept(body)
    assert reply.status == 400
    assert reply.body
    assert await read_all(azurite.connection_string, queue) == []


async def test_body_over_one_mebibyte_is_refused_with_413(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    padding = "x" * (1024 * 1024)
    reply = await ingest.accept(batch(notification(padding=padding)))
    assert reply.status == 413
    assert await read_all(azurite.connection_string, queue) == []


async def test_large_batch_is_split_into_messages_that_fit_and_lose_nothing(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    items = [notification(resource=f"drives/b!drive/root#{i:04d}" + "r" * 900) for i in range(200)]
    reply = await ingest.accept(batch(*items))
    assert reply.status == 202
    messages = await read_all(azurite.connection_string, queue)
    assert len(messages) > 1
    assert all(len(json.dumps(m, separators=(",", ":")).encode()) <= MAX_MESSAGE_JSON_BYTES for m in messages)
    stored = sorted(item["resource"] for m in messages for item in m["value"])
    assert stored == sorted(item["resource"] for item in items)


async def test_unreachable_queue_answers_503_within_graphs_budget(ingest_factory):
    ingest, _ = await ingest_factory(unreachable_queue())
    started = time.monotonic()
    reply = await ingest.accept(batch(notification()))
    assert reply.status == 503
    assert time.monotonic() - started < 3.0


async def test_stopped_storage_answers_503_and_stores_once_back(azurite_factory, unique_name):
    emulator = azurite_factory(persistent=True)
    table, queue = unique_name("subs"), unique_name("notes")
    tables = table_client(emulator.connection_string, table, retry_total=0)
    queues = queue_client(emulator.connection_string, queue, retry_total=0)
    async with tables, queues:
        await _stop_and_restart(emulator, tables, queues, queue)


async def _stop_and_restart(emulator: Azurite, tables: Any, queues: Any, queue: str) -> None:
    store = SubscriptionStore(tables)
    await store.setup()
    now = datetime.now(UTC)
    await store.save(SubscriptionRecord("k|updated", "drives/x/root", "updated", SECRET, ACTIVE, now, SUBSCRIPTION_ID))
    ingest = Ingest(SecretBook(store.secrets, ttl=0), MessageQueue(queues))
    assert (await ingest.accept(batch(notification()))).status == 202
    emulator.stop()
    assert (await ingest.accept(batch(notification()))).status == 503
    emulator.start()
    assert (await ingest.accept(batch(notification()))).status == 202
    assert len(await read_all(emulator.connection_string, queue)) == 2


async def test_concurrent_requests_share_queue_writes_and_all_are_stored(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    replies = await asyncio.gather(*(ingest.accept(batch(notification(resource=f"r{i}"))) for i in range(40)))
    assert [r.status for r in replies] == [202] * 40
    messages = await read_all(azurite.connection_string, queue)
    assert sorted(item["resource"] for m in messages for item in m["value"]) == sorted(f"r{i}" for i in range(40))
    assert len(messages) < 40  # requests that waited for the same write went in it together


async def test_concurrent_requests_all_get_503_when_the_shared_write_fails(ingest_factory):
    ingest, _ = await ingest_factory(unreachable_queue())
    replies = await asyncio.gather(*(ingest.accept(batch(notification())) for _ in range(10)))
    assert [r.status for r in replies] == [503] * 10
