"""`graphhooks eventgrid replay`: Event Grid's dead letters stored as the trigger would have, against Azurite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from devtools.azurite import Azurite, free_port
from devtools.messages import receive_json
from graphhooks.cli import app
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.stores.clients import container_client, table_client
from shared.stores.subscriptions import SubscriptionStore

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "eventgrid"
DRIVE = "drives/b!dead-letters/root"


def documented(name: str, **data: Any) -> dict[str, Any]:
    """One of Microsoft's documented Event Grid events (tests/payloads/eventgrid), its data changed by ``data``."""
    event = dict(json.loads((PAYLOADS / name).read_text())["event"])
    event["data"] = {**event["data"], **data}
    # What Event Grid adds to a dead-lettered CloudEvent (learn azure/event-grid/manage-event-delivery).
    return event | {"deadletterreason": "MaxDeliveryAttemptsExceeded", "deliveryattempts": 30}


async def cli(settings: Path, *args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, ["--settings", str(settings), *args])


SID, SECRET = "5d0c7a8e-1111-4222-8333-944455556666", "dead-letter-state"
CONTAINER = "eventgrid-deadletter"


async def dead_letters(azurite: Azurite, tmp_path: Path, connection: str | None = None) -> Path:
    """A subscription, one dead-letter blob (its notification and a forgery), and settings naming ``connection``."""
    async with table_client(azurite.connection_string, SUBSCRIPTIONS_TABLE) as client:
        store = SubscriptionStore(client)
        await store.setup()
        record = SubscriptionRecord(
            f"{DRIVE.replace('/', ':')}|updated", DRIVE, "updated", SECRET, ACTIVE, datetime.now(UTC), SID
        )
        await store.save(record)
    stored = documented("drive-item-updated.json", subscriptionId=SID, clientState=SECRET)
    forged = documented("drive-item-updated.json", subscriptionId=SID, clientState="forged")
    async with container_client(azurite.connection_string, CONTAINER) as blobs:
        await blobs.create_container()
        await blobs.upload_blob("topic/eventgrid/2026/12/08/00/one.json", json.dumps([stored, forged]))
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": connection or azurite.connection_string}}))
    return settings


async def blob_names(azurite: Azurite) -> list[str]:
    async with container_client(azurite.connection_string, CONTAINER) as blobs:
        return [b.name async for b in blobs.list_blobs()]


async def test_dead_letters_are_stored_as_notifications_and_their_blob_deleted(azurite_factory, tmp_path):
    azurite = azurite_factory()  # its own account: graph-notifications holds only what the replay stores
    settings = await dead_letters(azurite, tmp_path)

    dry = await cli(settings, "eventgrid", "replay", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would store 2 event(s) from 1 blob(s)" in dry.stdout
    assert await receive_json(azurite.connection_string, NOTIFICATIONS_QUEUE) == []

    done = await cli(settings, "eventgrid", "replay", "--yes")
    assert done.exit_code == 0, done.output
    messages = await receive_json(azurite.connection_string, NOTIFICATIONS_QUEUE)
    items = [item for message in messages for item in message["value"]]
    assert [(i["subscriptionId"], i["changeType"]) for i in items] == [(SID, "updated")]  # the forged one refused
    assert await blob_names(azurite) == []


async def test_a_blob_whose_events_were_not_stored_stays_for_the_next_replay(azurite_factory, tmp_path):
    azurite = azurite_factory()
    # The queue is unreachable; the table (clientStates) and the blobs are not.
    down = azurite.connection_string.replace(f":{azurite.queue_port}/", f":{free_port()}/")
    settings = await dead_letters(azurite, tmp_path, down)

    failed = await cli(settings, "eventgrid", "replay", "--yes")

    assert failed.exit_code == 1
    assert await blob_names(azurite) == ["topic/eventgrid/2026/12/08/00/one.json"]
    again = await cli(await dead_letters_settings(tmp_path, azurite), "eventgrid", "replay", "--yes")
    assert again.exit_code == 0, again.output
    messages = await receive_json(azurite.connection_string, NOTIFICATIONS_QUEUE)
    assert [i["subscriptionId"] for m in messages for i in m["value"]] == [SID]
    assert await blob_names(azurite) == []


async def dead_letters_settings(tmp_path: Path, azurite: Azurite) -> Path:
    settings = tmp_path / "reachable.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": azurite.connection_string}}))
    return settings


async def test_a_missing_container_is_named(azurite, tmp_path):
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": azurite.connection_string}}))

    result = await cli(settings, "eventgrid", "replay", "--container", "nosuchcontainer", "--yes")

    assert result.exit_code == 1
    assert "there is no container named nosuchcontainer" in result.stderr
