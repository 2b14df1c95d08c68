"""The Event Grid trigger's ingest on a real Azurite: stored as a webhook's would be, refused, or raised."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.azurite import Azurite, free_port
from devtools.messages import receive_json
from shared import refusals
from shared.clock import utcnow
from shared.errors import NotStoredError
from shared.ingest.event_grid import EventGridIngest
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import SecretBook
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "eventgrid"
SUBSCRIPTION_ID = "8e1c0a4b-6f3d-4a7b-9c2e-5d4f3a2b1c0d"
SECRET = "event-grid-client-state"
DRIVE = "drives/b!eventgrid/root"


def drive_event(**data: Any) -> tuple[str, dict[str, Any]]:
    """(type, data) of a OneDrive event as learn azure/event-grid/one-drive-events documents it: no changeType."""
    body = {
        "subscriptionId": SUBSCRIPTION_ID,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "clientState": SECRET,
        "expirationDateTime": "2026-12-20T18:11:08.587Z",
        "resource": DRIVE,
        "resourceData": {"@odata.type": "#Microsoft.Graph.driveItem"},
    }
    body.update(data)
    return "Microsoft.Graph.DriveItemUpdated", body


def record(subscription_id: str = SUBSCRIPTION_ID, secret: str = SECRET) -> SubscriptionRecord:
    key = f"{DRIVE.replace('/', ':')}|updated"
    return SubscriptionRecord(key, DRIVE, "updated", secret, ACTIVE, datetime.now(UTC), subscription_id)


def documented(name: str) -> dict[str, Any]:
    """One of Microsoft's documented Event Grid events (tests/payloads/eventgrid: each names its article)."""
    return dict(json.loads((PAYLOADS / name).read_text())["event"])


def counted() -> dict[str, int]:
    """This process's refusals by reason (none flushed in these tests)."""
    totals: dict[str, int] = {}
    for row in refusals.ledger().due(utcnow()):
        totals[row.reason.value] = totals.get(row.reason.value, 0) + row.count
    return totals


def unreachable_queue() -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"QueueEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )


@pytest.fixture
async def channel_factory(
    azurite: Azurite, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[tuple[EventGridIngest, str]]]]:
    """An Event Grid ingest over a fresh table holding one subscription and a fresh queue (or an unreachable one)."""
    clients = AsyncExitStack()

    async def make(
        connection: str | None = None, known: SubscriptionRecord | None = None
    ) -> tuple[EventGridIngest, str]:
        table, queue = unique_name("egsubs"), unique_name("egnotes")
        store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
        await store.setup()
        await store.save(known or record())
        target = await clients.enter_async_context(
            queue_client(connection or azurite.connection_string, queue, retry_total=0)
        )
        return EventGridIngest(Ingest(SecretBook(store.secret), MessageQueue(target))), queue

    async with clients:
        yield make


async def test_a_documented_onedrive_event_is_stored_as_an_updated_notification(azurite, channel_factory):
    channel, queue = await channel_factory()

    await channel.accept(*drive_event())

    [message] = await receive_json(azurite.connection_string, queue)
    [item] = message["value"]
    assert (item["subscriptionId"], item["changeType"], item["resource"]) == (SUBSCRIPTION_ID, "updated", DRIVE)
    assert "clientState" not in item
    assert message["source"] == "eventGrid"


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("drive-item-updated.json", "updated"),
        ("list-updated.json", "updated"),
        ("user-updated.json", "updated"),
        ("user-deleted.json", "deleted"),
        ("group-deleted.json", "deleted"),
        ("outlook-event-created.json", "created"),
        ("subscription-reauthorization-required.json", None),
    ],
)
async def test_each_documented_event_is_stored_as_its_notification(azurite, channel_factory, name, change):
    event = documented(name)
    data = event["data"]
    channel, queue = await channel_factory(known=record(data["subscriptionId"], data["clientState"]))

    await channel.accept(event["type"], data)

    [message] = await receive_json(azurite.connection_string, queue)
    [item] = message["value"]
    assert item["subscriptionId"] == data["subscriptionId"]
    assert item.get("changeType") == change
    assert item.get("lifecycleEvent") == (None if change else "reauthorizationRequired")


async def test_a_wrong_client_state_is_refused_counted_and_nothing_stored(azurite, channel_factory):
    channel, queue = await channel_factory()
    before = counted()

    await channel.accept(*drive_event(clientState="forged"))  # acknowledged: a redelivery would be refused again

    assert await receive_json(azurite.connection_string, queue) == []
    assert counted().get("badClientState", 0) == before.get("badClientState", 0) + 1


async def test_an_unknown_subscription_is_refused_with_nothing_stored(azurite, channel_factory):
    channel, queue = await channel_factory()

    await channel.accept(*drive_event(subscriptionId="00000000-0000-0000-0000-000000000000"))

    assert await receive_json(azurite.connection_string, queue) == []


async def test_data_that_is_no_notification_is_refused_with_nothing_stored(azurite, channel_factory):
    channel, queue = await channel_factory()
    before = counted()

    await channel.accept("Contoso.Other", {"subscriptionId": SUBSCRIPTION_ID, "clientState": SECRET})
    await channel.accept("Microsoft.Graph.UserUpdated", "not an object")

    assert await receive_json(azurite.connection_string, queue) == []
    assert counted().get("malformed", 0) == before.get("malformed", 0) + 2


async def test_a_lifecycle_event_goes_to_the_queue_as_a_lifecycle_notification(azurite, channel_factory):
    channel, queue = await channel_factory()
    data = {
        "subscriptionId": SUBSCRIPTION_ID,
        "clientState": SECRET,
        "lifecycleEvent": "reauthorizationRequired",
        "subscriptionExpirationDateTime": "2026-12-20T18:11:08.587Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    }

    await channel.accept("Microsoft.Graph.SubscriptionReauthorizationRequired", data)

    [message] = await receive_json(azurite.connection_string, queue)
    assert [i["lifecycleEvent"] for i in message["value"]] == ["reauthorizationRequired"]


async def test_a_storage_outage_raises_so_event_grid_redelivers(channel_factory):
    channel, _ = await channel_factory(unreachable_queue())

    with pytest.raises(NotStoredError):
        await channel.accept(*drive_event())
