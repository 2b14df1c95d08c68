"""The Event Grid channel end to end: the simulator's partner topic posts CloudEvents to the real local host.

The host serves the Functions Event Grid route (POST /runtime/webhooks/eventgrid?functionName=eventgrid,
``aeg-event-type: Notification``), binds each event as the Python worker does and runs
function_app's ``eventgrid`` trigger; the queue trigger then runs as for any notification.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from devtools.eventgrid_control import EventGridControl
from devtools.messages import peek_count
from devtools.stack import DEMO_DRIVE
from shared.model.event_grid import PartnerTopic
from shared.model.names import NOTIFICATIONS_QUEUE
from tests.e2e.support import E2E, eventually

TOPIC = PartnerTopic("8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e", "rg-graphhooks", "graphhooks-e2e", "westeurope")
CHANNEL = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": TOPIC.azure_subscription_id,
    "EVENT_GRID_RESOURCE_GROUP": TOPIC.resource_group,
    "EVENT_GRID_PARTNER_TOPIC": TOPIC.name,
    "EVENT_GRID_LOCATION": TOPIC.location,
}
ENTRY = {"resource": f"drives/{DEMO_DRIVE}/root", "delivery": "eventGrid"}


def post_event(url: str, event: dict[str, Any]) -> int:
    """POST one CloudEvent to the host's Event Grid route as Event Grid does; the status."""
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/cloudevents+json", "aeg-event-type": "Notification"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def grid_e2e(e2e_factory: Any, **options: Any) -> tuple[E2E, dict[str, Any], str]:
    """A stack whose drive subscription is delivered through the topic, activated towards the host."""
    e2e: E2E = await e2e_factory(subscriptions=[ENTRY], extra_env=CHANNEL, **options)
    await e2e.control.create_drive(DEMO_DRIVE)
    await asyncio.to_thread(e2e.stack.run_function, "renew")
    sub = await e2e.subscription()
    route = f"{e2e.stack.base_url}/runtime/webhooks/eventgrid?functionName=eventgrid"
    await EventGridControl(e2e.control).activate(TOPIC.url, route)
    await e2e.idle()
    await e2e.changes.read()
    return e2e, sub, route


@pytest.mark.timeout(180)
async def test_a_change_reaches_graph_changes_through_the_partner_topic_and_a_forgery_is_not_stored(e2e_factory):
    e2e, sub, route = await grid_e2e(e2e_factory)
    assert sub["notificationUrl"] == TOPIC.url

    item = await e2e.control.create_item(DEMO_DRIVE, "via-event-grid.txt", "1")

    await e2e.changes.wait(lambda: bool(e2e.changes.for_item(item["id"])), what="the change through Event Grid")
    [event] = e2e.changes.for_item(item["id"])
    assert (event["changeType"], event["subscriptionId"]) == ("created", sub["id"])
    [topic] = await EventGridControl(e2e.control).topics()
    assert topic["delivered"] >= 1 and topic["deadLettered"] == 0

    await e2e.idle()
    forged = {
        "id": "forged-1",
        "type": "Microsoft.Graph.DriveItemUpdated",
        "source": "/tenants/x/applications/y",
        "specversion": "1.0",
        "data": {"subscriptionId": sub["id"], "clientState": "not-the-secret", "resource": sub["resource"]},
    }
    assert await asyncio.to_thread(post_event, route, forged) == 202  # refused, so not redelivered
    unknown = {**forged, "id": "forged-2", "data": {**forged["data"], "subscriptionId": "no-such-subscription"}}
    assert await asyncio.to_thread(post_event, route, unknown) == 202
    assert await peek_count(e2e.connection, NOTIFICATIONS_QUEUE) == 0


@pytest.mark.timeout(300)
async def test_storage_down_fails_the_trigger_and_event_grids_redelivery_stores_the_change(e2e_factory):
    e2e, _, _ = await grid_e2e(e2e_factory, persistent_storage=True, sim_options=("--eventgrid-retry-scale", "0.1"))
    grid = EventGridControl(e2e.control)

    before = (await e2e.control.stats())["delivery"]["failures"]

    await asyncio.to_thread(e2e.stack.azurite.stop)
    item = await e2e.control.create_item(DEMO_DRIVE, "while-storage-is-down.txt", "1")

    async def trigger_failed() -> bool:  # the host answered 500: the function raised, nothing was acknowledged
        failures = (await e2e.control.stats())["delivery"]["failures"]
        return int(failures.get("500", 0)) > int(before.get("500", 0))

    await eventually(trigger_failed, what="a delivery the eventgrid trigger failed")
    await asyncio.to_thread(e2e.stack.azurite.start)

    await e2e.changes.wait(lambda: bool(e2e.changes.for_item(item["id"])), within=120, what="the redelivered change")
    assert [e["changeType"] for e in e2e.changes.for_item(item["id"])] == ["created"]
    assert await grid.dead_letters() == []
