"""The HTTP path against a real Azurite: what is stored, what is refused, and when it answers 503."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.azurite import Azurite, free_port
from devtools.messages import receive_json
from shared import refusals
from shared.clock import utcnow
from shared.errors import MalformedBodyError
from shared.ingest.group_commit import GroupCommit
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import MAX_FINDS_PER_REQUEST, SECRETS_DEADLINE_SECONDS, SecretBook
from shared.model.notifications import MAX_BODY_BYTES, MAX_ITEMS_PER_BATCH, MAX_MESSAGE_JSON_BYTES, Envelope
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore

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


@dataclass
class Storage:
    """A fresh subscriptions table holding one subscription, and a fresh queue."""

    store: SubscriptionStore
    queue: MessageQueue
    queue_name: str


@pytest.fixture
async def storage_factory(
    azurite: Azurite, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[Storage]]]:
    """Build a table (holding one subscription) and a queue, on Azurite or an unreachable queue endpoint."""
    clients = AsyncExitStack()

    async def make(connection: str | None = None) -> Storage:
        table, queue = unique_name("subs"), unique_name("notes")
        store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
        await store.setup()
        await store.save(record(SUBSCRIPTION_ID, SECRET))
        target = await clients.enter_async_context(
            queue_client(connection or azurite.connection_string, queue, retry_total=0)
        )
        return Storage(store, MessageQueue(target), queue)

    async with clients:
        yield make


@pytest.fixture
def ingest_factory(
    storage_factory: Callable[..., Awaitable[Storage]],
) -> Callable[..., Awaitable[tuple[Ingest, str]]]:
    """Build an Ingest over a fresh table (holding one subscription) and a fresh queue."""

    async def make(connection: str | None = None) -> tuple[Ingest, str]:
        storage = await storage_factory(connection)
        return Ingest(SecretBook(storage.store.secret), storage.queue), storage.queue_name

    return make


def record(subscription_id: str, secret: str, resource: str = "drives/x/root") -> SubscriptionRecord:
    """An active subscription record as the reconciler stores it."""
    key = f"{resource.replace('/', ':')}|updated"
    return SubscriptionRecord(key, resource, "updated", secret, ACTIVE, datetime.now(UTC), subscription_id)


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
    ingest = Ingest(SecretBook(store.secret, ttl=0), MessageQueue(queues))
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


# --- hardening: types, counts, encodings ------------------------------------------------------


@pytest.mark.parametrize("event", [["missed"], {"event": "missed"}], ids=["list", "object"])
async def test_lifecycle_event_that_is_not_a_string_is_dropped_cleanly(azurite, ingest_factory, caplog, event):
    ingest, queue = await ingest_factory()
    good = notification(lifecycleEvent="missed")
    reply = await ingest.accept(batch(notification(lifecycleEvent=event), good), lifecycle=True)
    assert reply.status == 202
    [message] = await read_all(azurite.connection_string, queue)
    assert [item["lifecycleEvent"] for item in message["value"]] == ["missed"]
    assert "unknown lifecycleEvent: 1" in caplog.text


async def test_a_mebibyte_of_ten_thousand_items_is_refused_with_413_and_one_log_line(azurite, ingest_factory, caplog):
    ingest, queue = await ingest_factory()
    compact = {"separators": (",", ":")}
    forged = {"subscriptionId": SUBSCRIPTION_ID, "clientState": "forged", "n": ""}
    forged["n"] = "f" * (MAX_BODY_BYTES // 10_000 - len(json.dumps(forged, **compact)) - 2)  # 10,000 fill 1 MiB
    body = json.dumps({"value": [forged] * 10_000}, **compact).encode()
    assert 0.9 * MAX_BODY_BYTES < len(body) <= MAX_BODY_BYTES
    caplog.set_level(logging.INFO, logger="shared")
    reply = await ingest.accept(body)
    assert reply.status == 413
    assert str(MAX_ITEMS_PER_BATCH) in reply.body
    assert len([r for r in caplog.records if r.name.startswith("shared")]) == 1
    assert await read_all(azurite.connection_string, queue) == []


async def test_rejected_items_give_one_summary_line_with_counts_by_reason(azurite, ingest_factory, caplog):
    ingest, queue = await ingest_factory()
    forged = [notification(client_state=f"guess-{n}") for n in range(600)]
    # Not subscription ids (GUIDs), so never read: unknown without a read (see SecretBook).
    strangers = [notification(subscription_id=f"stranger:{n}") for n in range(300)]
    shapeless = [{"changeType": "updated"} for _ in range(99)]
    caplog.set_level(logging.INFO, logger="shared")
    reply = await ingest.accept(batch(*forged, *strangers, *shapeless, notification()))
    assert reply.status == 202
    [line] = [r.getMessage() for r in caplog.records if r.name.startswith("shared")]
    assert "dropped 999 of 1000" in line
    assert "clientState mismatch: 600" in line
    assert "unknown subscription: 300" in line
    assert "no subscriptionId: 99" in line
    assert "guess-" not in caplog.text and SECRET not in caplog.text
    [message] = await read_all(azurite.connection_string, queue)
    assert len(message["value"]) == 1


async def test_every_refusal_is_counted_by_reason(azurite, ingest_factory):
    ingest, queue = await ingest_factory()
    stranger = "7a1c9e40-0000-4000-8000-00000000abcd"
    await ingest.accept(b"{not json")
    await ingest.accept(batch(notification(padding="x" * MAX_BODY_BYTES)))
    forged, unknown, shapeless = notification(client_state="forged"), notification(stranger), {"changeType": "updated"}
    await ingest.accept(batch(forged, forged, unknown, shapeless, notification()))
    await ingest.accept(poisoned_batch())
    await ingest.accept(batch(notification(lifecycleEvent="bogus")), lifecycle=True)

    counted: dict[str, int] = {}
    for row in refusals.ledger().due(utcnow()):  # nothing flushes here; a 5-minute bucket may have turned
        counted[row.reason.value] = counted.get(row.reason.value, 0) + row.count
    assert counted == {
        "malformed": 2,  # the body that is not JSON (counted once), the item that is not Unicode
        "tooLarge": 1,
        "badClientState": 2,
        "unknownSubscription": 1,
        "noSubscriptionId": 1,
        "unknownLifecycleEvent": 1,
    }
    assert len(await read_all(azurite.connection_string, queue)) == 1  # the one valid item


def poisoned_batch() -> bytes:
    """A batch whose one item has the right clientState and a lone surrogate ("\\ud800") in a field."""
    return batch(notification(resource="drives/POISON/root")).replace(b"POISON", b"\\ud800")


async def test_a_poisoned_request_does_not_fail_the_requests_sharing_its_write(azurite, ingest_factory, caplog):
    ingest, queue = await ingest_factory()
    bodies = [batch(notification(resource=f"r{i}")) for i in range(30)]
    bodies.insert(15, poisoned_batch())
    replies = await asyncio.gather(*(ingest.accept(body) for body in bodies))
    statuses = [reply.status for reply in replies]
    assert statuses[:15] + statuses[16:] == [202] * 30
    assert statuses[15] < 500  # its item is dropped: only it is affected
    messages = await read_all(azurite.connection_string, queue)
    stored = sorted(item["resource"] for m in messages for item in m["value"])
    assert stored == sorted(f"r{i}" for i in range(30))
    assert "text not valid Unicode: 1" in caplog.text


async def test_an_envelope_that_cannot_be_encoded_fails_only_its_own_store(azurite, storage_factory):
    # The writer's own guard, below the per-item check: a group never fails for one envelope.
    storage = await storage_factory()
    writer = GroupCommit(storage.queue)
    now = datetime.now(UTC)
    envelopes = [Envelope("notifications", now, [{"subscriptionId": SUBSCRIPTION_ID, "n": i}]) for i in range(20)]
    envelopes.insert(7, Envelope("notifications", now, [{"subscriptionId": SUBSCRIPTION_ID, "n": "\ud800"}]))
    outcomes = await asyncio.gather(*(writer.store(e) for e in envelopes), return_exceptions=True)
    assert isinstance(outcomes[7], MalformedBodyError)
    assert outcomes[:7] + outcomes[8:] == [None] * 20
    messages = await read_all(azurite.connection_string, storage.queue_name)
    assert sorted(item["n"] for m in messages for item in m["value"]) == list(range(20))


async def test_an_accepted_notifications_message_never_expires(azurite, ingest_factory):
    # Storage's default time-to-live is 7 days; Azurite, like Azure, reports "never" as 9999-12-31.
    ingest, queue = await ingest_factory()
    assert (await ingest.accept(batch(notification()))).status == 202
    from azure.storage.queue.aio import QueueClient

    async with QueueClient.from_connection_string(azurite.connection_string, queue) as client:
        [message] = await client.peek_messages()
    assert message.expires_on.year == 9999


# --- subscription secrets: ids new to the cache, slow and unreachable tables ------------------------


def unreachable_table() -> str:
    """A connection string whose table endpoint has nothing listening."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )


async def test_a_subscription_created_a_moment_ago_is_stored_not_dropped(azurite, ingest_factory, storage_factory):
    storage = await storage_factory()
    ingest = Ingest(SecretBook(storage.store.secret), storage.queue)
    assert (await ingest.accept(batch(notification()))).status == 202  # the cache is loaded now
    fresh_id = "5c1d0c62-0b7e-4a55-9d7e-2f6a4c3b1e09"
    await storage.store.save(record(fresh_id, "fresh-secret", "drives/fresh/root"))

    reply = await ingest.accept(batch(notification(fresh_id, "fresh-secret", resource="drives/fresh/root")))

    assert reply.status == 202
    messages = await read_all(azurite.connection_string, storage.queue_name)
    assert [item["subscriptionId"] for m in messages for item in m["value"]] == [SUBSCRIPTION_ID, fresh_id]


async def test_an_id_new_to_the_cache_gets_503_when_storage_cannot_answer(azurite, storage_factory):
    storage = await storage_factory()
    async with table_client(unreachable_table(), "subscriptions", retry_total=0) as down:
        # The known id is read from the real table; any other id meets a table that does not answer.
        def find(sid: str) -> Any:
            return (storage.store if sid == SUBSCRIPTION_ID else SubscriptionStore(down)).secret(sid)

        ingest = Ingest(SecretBook(find), storage.queue)
        assert (await ingest.accept(batch(notification()))).status == 202  # known, and cached
        started = time.monotonic()

        reply = await ingest.accept(batch(notification("5c1d0c62-0b7e-4a55-9d7e-2f6a4c3b1e09", "fresh-secret")))

    assert reply.status == 503  # Graph retries: never a silent drop
    assert time.monotonic() - started < 3.0
    assert len(await read_all(azurite.connection_string, storage.queue_name)) == 1


class SlowTable:
    """The real point read, slower than the HTTP path's deadline, counting reads in flight."""

    def __init__(self, store: SubscriptionStore, delay: float) -> None:
        self._store = store
        self._delay = delay
        self.reads = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def secret(self, subscription_id: str) -> str | None:
        self.reads += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self._delay)
            return await self._store.secret(subscription_id)
        finally:
            self.in_flight -= 1


async def test_a_slow_secrets_table_does_not_cause_an_endless_run_of_503s(azurite, storage_factory):
    storage = await storage_factory()
    slow = SlowTable(storage.store, delay=SECRETS_DEADLINE_SECONDS * 1.5)
    # ttl=0: every request finds the cached secret due for a refresh, the worst case for a slow table.
    book = SecretBook(slow.secret, ttl=0)
    ingest = Ingest(book, storage.queue)

    first = await asyncio.gather(*(ingest.accept(batch(notification(resource="first"))) for _ in range(5)))
    await book.settle()  # the first read, which no request's deadline cancelled, completes
    later = [await ingest.accept(batch(notification(resource=f"r{i}"))) for i in range(10)]

    assert [r.status for r in first] == [503] * 5  # nothing to serve until the first read completes
    assert [r.status for r in later] == [202] * 10  # the last good value, while refreshes run
    assert slow.most_in_flight == 1
    await book.settle()
    messages = await read_all(azurite.connection_string, storage.queue_name)
    assert sorted(item["resource"] for m in messages for item in m["value"]) == sorted(f"r{i}" for i in range(10))


# --- a cold instance: many subscription ids new to it in one batch ---------------------------------


class CountingTable:
    """The real point read, counting the reads each request causes."""

    def __init__(self, store: SubscriptionStore) -> None:
        self._store = store
        self.reads: list[str] = []

    async def secret(self, subscription_id: str) -> str | None:
        self.reads.append(subscription_id)
        return await self._store.secret(subscription_id)


def member_id(n: int) -> str:
    return f"{n:08d}-5e75-4e75-8e75-0000000000aa"


async def members(storage: Storage, count: int) -> list[dict[str, Any]]:
    """``count`` subscriptions stored (as a subscription set creates them), one notification each."""
    for n in range(count):
        await storage.store.save(record(member_id(n), f"member-secret-{n}", f"users/u{n}/drive/root"))
    return [notification(member_id(n), f"member-secret-{n}", resource=f"users/u{n}/drive/root") for n in range(count)]


async def stored_resources(connection: str, queue: str) -> list[str]:
    return [item["resource"] for m in await read_all(connection, queue) for item in m["value"]]


async def test_a_cold_instance_stores_a_batch_naming_thirty_new_subscriptions(azurite, storage_factory):
    # A subscription set makes 25 fresh ids in one batch routine: none of them may be dropped.
    storage = await storage_factory()
    items = await members(storage, 30)
    ingest = Ingest(SecretBook(storage.store.secret), storage.queue)  # cold: nothing cached

    reply = await ingest.accept(batch(notification(), *items))

    assert reply.status == 202
    assert sorted(await stored_resources(azurite.connection_string, storage.queue_name)) == sorted(
        ["drives/b!drive/root", *(item["resource"] for item in items)]
    )


async def test_ids_beyond_the_read_cap_get_503_until_graphs_retries_have_checked_them_all(azurite, storage_factory):
    storage = await storage_factory()
    items = await members(storage, MAX_FINDS_PER_REQUEST * 2 + 20)
    table = CountingTable(storage.store)
    ingest = Ingest(SecretBook(table.secret), storage.queue)

    statuses, reads = [], []
    for _ in range(4):  # Graph retries the whole batch after each 5xx
        before = len(table.reads)
        statuses.append((await ingest.accept(batch(*items))).status)
        reads.append(len(table.reads) - before)

    assert statuses == [503, 503, 202, 202]
    assert reads == [MAX_FINDS_PER_REQUEST, MAX_FINDS_PER_REQUEST, 20, 0]
    stored = Counter(await stored_resources(azurite.connection_string, storage.queue_name))
    # Checked items are stored before each 503 (duplicates are allowed: delivery is at least once).
    assert set(stored) == {item["resource"] for item in items}
    assert stored[items[0]["resource"]] == 4 and stored[items[-1]["resource"]] == 2


async def test_forged_ids_cost_at_most_the_cap_in_reads_and_never_keep_a_batch_refused(azurite, storage_factory):
    storage = await storage_factory()
    table = CountingTable(storage.store)
    ingest = Ingest(SecretBook(table.secret), storage.queue)
    forged = [notification(f"{n:08d}-f0f0-4f0f-8f0f-0000000000ff", "guess") for n in range(MAX_FINDS_PER_REQUEST * 4)]
    body = batch(notification(), *forged)

    replies, reads = [], []
    for _ in range(6):
        before = len(table.reads)
        replies.append((await ingest.accept(body)).status)
        reads.append(len(table.reads) - before)

    assert max(reads) <= MAX_FINDS_PER_REQUEST
    assert replies[:4] == [503] * 4  # each retry reads the next ids
    assert replies[4:] == [202, 202]  # every forged id is known absent now: dropped as unknown
    assert set(await stored_resources(azurite.connection_string, storage.queue_name)) == {"drives/b!drive/root"}


async def test_an_unreadable_table_stores_the_known_items_and_answers_503_for_the_others(azurite, storage_factory):
    storage = await storage_factory()
    fresh = "5c1d0c62-0b7e-4a55-9d7e-2f6a4c3b1e09"
    async with table_client(unreachable_table(), "subscriptions", retry_total=0) as down:

        def find(sid: str) -> Any:
            return (storage.store if sid == SUBSCRIPTION_ID else SubscriptionStore(down)).secret(sid)

        ingest = Ingest(SecretBook(find), storage.queue)
        reply = await ingest.accept(batch(notification(), notification(fresh, "fresh-secret", resource="fresh")))

    assert reply.status == 503  # the fresh one is retried by Graph
    assert await stored_resources(azurite.connection_string, storage.queue_name) == ["drives/b!drive/root"]
