"""Subscriptions delivered through Event Grid, against Azurite and the simulator's partner topics.

The simulator creates the partner topic with the first subscription that names it and, once
the topic is activated with a destination (what scripts/activate-event-grid.sh does in Azure),
delivers each notification there as a CloudEvent. The stack's receiver runs the ``eventgrid``
trigger as the host does; tests/e2e runs the real host.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from devtools.eventgrid_control import EventGridControl
from shared.model.event_grid import PartnerTopic
from tests.functional.stacks import DRIVE, RESOURCE, Stack

TOPIC = PartnerTopic("8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e", "rg-graphhooks", "graphhooks-events", "westeurope")
CHANNEL = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": TOPIC.azure_subscription_id,
    "EVENT_GRID_RESOURCE_GROUP": TOPIC.resource_group,
    "EVENT_GRID_PARTNER_TOPIC": TOPIC.name,
    "EVENT_GRID_LOCATION": TOPIC.location,
}
WEBHOOK_DRIVE = "b!webhook-drive"
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], within: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what}: not reached within {within:.0f} s"
        await asyncio.sleep(0.2)
    return found


async def activate(stack: Stack) -> None:
    """What scripts/activate-event-grid.sh does in Azure: activate the topic, route it to the eventgrid trigger."""
    base = stack.env["NOTIFICATION_URL"].rsplit("/api/", 1)[0]
    destination = f"{base}/runtime/webhooks/eventgrid?functionName=eventgrid"
    await EventGridControl(stack.control).activate(TOPIC.url, destination)


async def grid_stack(stack_factory: Any, *entries: dict[str, Any], env: dict[str, str] | None = None) -> Stack:
    """A stack whose entries are created at Graph, their topic activated towards the stack's eventgrid route."""
    wanted = list(entries) or [{"resource": RESOURCE, "delivery": "eventGrid"}]
    drives = [e["resource"].split("/")[1] for e in wanted if e["resource"].startswith("drives/")]
    stack = await stack_factory(drives=drives or None, subscriptions=json.dumps(wanted), env={**CHANNEL, **(env or {})})
    report = await stack.reconcile()
    assert (report.created, report.failed) == (len(wanted), 0)
    base = stack.env["NOTIFICATION_URL"].rsplit("/api/", 1)[0]
    await EventGridControl(stack.control).activate(
        TOPIC.url, f"{base}/runtime/webhooks/eventgrid?functionName=eventgrid"
    )
    await stack.pump(lambda: True)  # the sync each creation requested
    return stack


async def test_an_event_grid_subscription_names_the_topic_for_both_urls_and_is_renewed(stack_factory):
    stack = await grid_stack(stack_factory)

    [sub] = await stack.control.subscriptions()
    assert sub["notificationUrl"] == TOPIC.url and sub["lifecycleNotificationUrl"] == TOPIC.url
    [topic] = await EventGridControl(stack.control).topics()
    assert (topic["name"], topic["resourceGroup"], topic["activationState"]) == (
        TOPIC.name,
        TOPIC.resource_group,
        "Activated",
    )

    days = 20
    await stack.control.advance_clock(days * 86400)
    report = await stack.reconcile(timedelta(days=days))
    assert (report.renewed, report.recreated, report.failed) == (1, 0, 0)
    [after] = await stack.control.subscriptions()
    assert after["id"] == sub["id"] and after["expirationDateTime"] > sub["expirationDateTime"]
    assert after["notificationUrl"] == TOPIC.url


async def test_a_change_through_event_grid_is_the_same_event_as_through_the_webhook(stack_factory):
    entries = [
        {"resource": f"drives/{WEBHOOK_DRIVE}/root"},
        {"resource": RESOURCE, "delivery": "eventGrid"},
    ]
    stack = await grid_stack(stack_factory, *entries)

    by_grid = await stack.control.create_item(DRIVE, "report.docx", "v1")
    by_hook = await stack.control.create_item(WEBHOOK_DRIVE, "report.docx", "v1")
    await stack.pump(lambda: bool(stack.for_item(by_grid["id"]) and stack.for_item(by_hook["id"])))

    [grid_event] = stack.for_item(by_grid["id"])
    [hook_event] = stack.for_item(by_hook["id"])
    assert sorted(grid_event) == sorted(hook_event)
    same = ("changeType", "kind", "resync", "tenantId")
    assert {k: grid_event.get(k) for k in same} == {k: hook_event.get(k) for k in same}
    assert grid_event["item"]["name"] == hook_event["item"]["name"] == "report.docx"
    assert [t["delivered"] for t in await EventGridControl(stack.control).topics()] == [1]


async def test_a_change_redelivered_by_event_grid_keeps_its_one_event(stack_factory):
    stack = await grid_stack(stack_factory)
    await stack.control.call("POST", "/delivery", {"duplicates": 2})

    item = await stack.control.create_item(DRIVE, "twice.txt", "1")
    await stack.pump(lambda: bool(stack.for_item(item["id"])))
    await stack.pump(lambda: True)

    assert [e["changeType"] for e in stack.for_item(item["id"])] == ["created"]


async def test_a_subscription_removed_through_event_grid_is_recreated_on_the_topic(stack_factory):
    stack = await grid_stack(stack_factory)
    [old] = await stack.control.subscriptions()

    await stack.control.lifecycle(old["id"], "subscriptionRemoved")  # Graph sends it to the topic too

    async def recreated() -> list[dict[str, Any]]:
        await stack.pump(lambda: True)
        return [s for s in await stack.control.subscriptions() if s["id"] != old["id"]]

    [new] = await eventually(recreated, what="the subscription re-created after subscriptionRemoved")
    assert new["notificationUrl"] == TOPIC.url and new["lifecycleNotificationUrl"] == TOPIC.url
    item = await stack.control.create_item(DRIVE, "after-removal.txt", "1")
    await stack.pump(lambda: bool(stack.for_item(item["id"])))
    assert stack.for_item(item["id"])[0]["subscriptionId"] == new["id"]


async def test_a_rich_notification_through_event_grid_is_checked_and_decrypted(stack_factory, tmp_path: Path):
    from devtools.graphsim.rich import make_certificate

    user = "grid-user@contoso.example"
    pfx = tmp_path / "grid.pfx"
    pfx.write_bytes(make_certificate("graph-event-grid-tests").pfx("pfx-password"))
    resource = f"users/{user}/mailFolders/inbox/messages"
    entry = {
        "resource": resource,
        "changeType": "created,updated,deleted",
        "includeResourceData": True,
        "delivery": "eventGrid",
    }
    certificate = {
        "NOTIFICATION_CERTIFICATE": str(pfx),
        "NOTIFICATION_CERTIFICATE_PASSWORD": "pfx-password",
        "NOTIFICATION_CERTIFICATE_ID": "grid-cert-1",
    }
    stack = await _rich_grid_stack(stack_factory, user, entry, certificate)

    message = await stack.control.create_message(user, subject="through the partner topic")
    await stack.pump(lambda: bool(stack.for_item(message["id"])))

    [event] = stack.for_item(message["id"])
    assert event["changeType"] == "created"
    assert event["item"]["subject"] == "through the partner topic", "the event carries the decrypted message"
    [topic] = await EventGridControl(stack.control).topics()
    assert topic["delivered"] >= 1 and topic["deadLettered"] == 0


async def _rich_grid_stack(stack_factory: Any, user: str, entry: dict[str, Any], certificate: dict[str, str]) -> Stack:
    stack = await stack_factory(subscriptions=json.dumps([entry]), env={**CHANNEL, **certificate})
    await stack.control.create_mailbox(user)
    report = await stack.reconcile()
    assert (report.created, report.failed) == (1, 0)
    base = stack.env["NOTIFICATION_URL"].rsplit("/api/", 1)[0]
    await EventGridControl(stack.control).activate(
        TOPIC.url, f"{base}/runtime/webhooks/eventgrid?functionName=eventgrid"
    )
    await stack.pump(lambda: True)
    return stack
