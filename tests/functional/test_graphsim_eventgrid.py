"""The simulator's Event Grid channel: EventGrid: URLs, partner topics, CloudEvents, retries and dead letters."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from devtools.graphsim.config import SimConfig
from devtools.graphsim.rich import make_certificate
from devtools.graphsim.server import SimHandle, start
from devtools.simclient import SimControl
from tests.functional.eventgrid_support import AZURE_SUB, Receiver, control, eventgrid_url, graph, subscribe

pytestmark = pytest.mark.timeout(60)
SCALE = 0.001  # 10 s -> 10 ms


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[SimHandle]:
    handle = await start(SimConfig(eventgrid_retry_scale=SCALE))
    yield handle
    await handle.close()


@pytest_asyncio.fixture
async def ctl(sim: SimHandle) -> AsyncIterator[SimControl]:
    async with SimControl(sim.control_url) as client:
        yield client


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = await Receiver().start()
    yield got
    await got.close()


async def activate(sim: SimHandle, destination: str, url: str | None = None) -> dict[str, Any]:
    return dict(
        await control(
            sim, "POST", "/_sim/eventgrid/topics/activate", {"url": url or eventgrid_url(), "destination": destination}
        )
    )


async def topics(sim: SimHandle) -> list[dict[str, Any]]:
    return list((await control(sim, "GET", "/_sim/eventgrid/topics"))["value"])


async def settled(sim: SimHandle) -> dict[str, Any]:
    """The one topic once nothing is pending (the receiver records a request before it answers)."""
    for _ in range(500):
        [topic] = await topics(sim)
        if topic["pending"] == 0:
            return topic
        await asyncio.sleep(0.01)
    raise AssertionError("events still pending")


async def test_an_eventgrid_subscription_needs_no_handshake_and_creates_its_topic_once(sim: SimHandle) -> None:
    assert await topics(sim) == []
    sub = await subscribe(sim, "users", "updated", eventgrid_url(), lifecycleNotificationUrl=eventgrid_url())
    assert sub["notificationUrl"] == eventgrid_url() and sub["lifecycleNotificationUrl"] == eventgrid_url()
    await subscribe(sim, "groups", "updated", eventgrid_url())
    [topic] = await topics(sim)
    assert topic["name"] == "graphhooks" and topic["activationState"] == "NeverActivated"
    assert (
        topic["id"]
        == f"/subscriptions/{AZURE_SUB}/resourceGroups/rg-graph/providers/Microsoft.EventGrid/partnerTopics/graphhooks"
    )
    assert topic["source"] == f"/tenants/{sim.config.tenant_id}/applications/{sim.config.client_id}"
    await subscribe(sim, "users", "updated", eventgrid_url(topic="other"))
    assert sorted(t["name"] for t in await topics(sim)) == ["graphhooks", "other"]


@pytest.mark.parametrize(
    "url",
    [
        "EventGrid:?azuresubscriptionid=8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e&resourcegroup=rg&partnertopic=t",
        "EventGrid:?azuresubscriptionid=not-a-guid&resourcegroup=rg&partnertopic=t&location=westeurope",
        "EventGrid:?azuresubscriptionid=8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e&resourcegroup=rg&partnertopic=t"
        "&location=West Europe",
        "EventGrid:somewhere?azuresubscriptionid=8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e&resourcegroup=rg&partnertopic=t&location=westeurope",
    ],
)
async def test_a_malformed_eventgrid_url_is_400_and_creates_nothing(sim: SimHandle, url: str) -> None:
    body = {
        "changeType": "updated",
        "notificationUrl": url,
        "resource": "users",
        "expirationDateTime": "2099-01-01T00:00:00Z",
    }
    status, error = await graph(sim, "POST", "/subscriptions", body)
    assert status == 400 and error["error"]["code"] == "InvalidRequest", error
    assert "EventGrid:?azuresubscriptionid=<guid>" in error["error"]["message"]
    assert await topics(sim) == []


async def test_events_before_activation_are_dropped_then_flow_as_documented(
    sim: SimHandle, ctl: SimControl, receiver: Receiver
) -> None:
    sub = await subscribe(sim, "users", "updated,deleted", eventgrid_url(), clientState="s3cret")
    user = await ctl.create_user(displayName="Ada")
    [topic] = await topics(sim)
    assert topic["published"] == 1 and topic["droppedNotActivated"] == 1
    activated = await activate(sim, receiver.url)
    assert activated["activationState"] == "Activated" and activated["destination"] == receiver.url
    await ctl.update_directory_object("users", user["id"], displayName="Ada L.")
    [got] = await receiver.wait_for(1)
    assert got.headers["aeg-event-type"] == "Notification"
    assert got.headers["Content-Type"].startswith("application/cloudevents+json")
    event = got.body
    assert event["type"] == "Microsoft.Graph.UserUpdated"
    assert event["source"] == f"/tenants/{sim.config.tenant_id}/applications/{sim.config.client_id}"
    assert event["subject"] == f"Users/{user['id']}"
    assert event["specversion"] == "1.0" and event["datacontenttype"] == "application/json"
    assert event["id"] and event["time"].endswith("Z")
    data = event["data"]
    assert data["changeType"] == "updated" and data["clientState"] == "s3cret"
    assert data["subscriptionId"] == sub["id"] and data["tenantId"] == sim.config.tenant_id
    assert data["resource"] == f"Users/{user['id']}" and data["resourceData"]["id"] == user["id"]
    assert "subscriptionExpirationDateTime" in data


async def test_types_and_subjects_per_resource(sim: SimHandle, ctl: SimControl, receiver: Receiver) -> None:
    drive = await ctl.create_drive()
    await ctl.create_mailbox("ada")
    await ctl.create_list("site1", "list1")
    for resource, changes in (
        ("users", "updated"),
        ("groups", "deleted"),
        (f"drives/{drive['id']}/root", "updated"),
        ("users/ada/messages", "created"),
        ("sites/site1/lists/list1", "updated"),
    ):
        await subscribe(sim, resource, changes, eventgrid_url())
    await activate(sim, receiver.url)
    user = await ctl.create_user(displayName="Ada")
    group = await ctl.create_group(displayName="Team")
    await ctl.delete_directory_object("groups", group["id"])
    await ctl.create_item(drive["id"], "a.txt", "x")
    message = await ctl.create_message("ada", subject="hi")
    await ctl.create_list_item("site1", "list1", {"Title": "t"})
    events = {d.body["type"]: d.body for d in await receiver.wait_for(5)}
    assert set(events) == {
        "Microsoft.Graph.UserUpdated",
        "Microsoft.Graph.GroupDeleted",
        "Microsoft.Graph.DriveItemUpdated",
        "Microsoft.Graph.MessageCreated",
        "Microsoft.Graph.ListUpdated",
    }
    assert events["Microsoft.Graph.UserUpdated"]["data"]["changeType"] == "updated"
    assert events["Microsoft.Graph.UserUpdated"]["subject"] == f"Users/{user['id']}"
    assert events["Microsoft.Graph.GroupDeleted"]["subject"] == f"Groups/{group['id']}"
    assert events["Microsoft.Graph.MessageCreated"]["subject"] == f"Messages/{message['id']}"
    assert events["Microsoft.Graph.ListUpdated"]["subject"] == "listItem/list1"
    drive_event = events["Microsoft.Graph.DriveItemUpdated"]
    assert drive_event["subject"].startswith("driveItem/") and drive_event["subject"] != "driveItem/"
    assert "changeType" not in drive_event["data"] and "subscriptionExpirationDateTime" not in drive_event["data"]
    assert drive_event["data"]["expirationDateTime"]
    assert drive_event["data"]["resourceData"] == {"@odata.type": "#Microsoft.Graph.driveItem"}


async def test_lifecycle_events_go_through_eventgrid(sim: SimHandle, receiver: Receiver) -> None:
    sub = await subscribe(
        sim, "users", "updated", eventgrid_url(), lifecycleNotificationUrl=eventgrid_url(), clientState="cs"
    )
    await activate(sim, receiver.url)
    for event in ("reauthorizationRequired", "missed", "subscriptionRemoved"):
        await control(sim, "POST", f"/_sim/subscriptions/{sub['id']}/lifecycle", {"event": event})
    got = [d.body for d in await receiver.wait_for(3)]
    assert sorted(e["type"] for e in got) == [
        "Microsoft.Graph.SubscriptionMissed",
        "Microsoft.Graph.SubscriptionReauthorizationRequired",
        "Microsoft.Graph.SubscriptionRemoved",
    ]
    for event in got:
        assert event["data"]["subscriptionId"] == sub["id"] and event["data"]["clientState"] == "cs"
        assert event["data"]["lifecycleEvent"] in ("reauthorizationRequired", "missed", "subscriptionRemoved")
        assert event["subject"] == f"Subscriptions/{sub['id']}"


async def test_a_failed_delivery_is_retried_with_growing_delays(
    sim: SimHandle, ctl: SimControl, receiver: Receiver
) -> None:
    await control(sim, "POST", "/_sim/eventgrid/retry", {"scale": 0.01})  # 0.1 s, 0.3 s, 0.6 s
    receiver.statuses = [500, 503, 500]
    await subscribe(sim, "users", "updated", eventgrid_url())
    await activate(sim, receiver.url)
    await ctl.create_user(displayName="Ada")
    got = await receiver.wait_for(4)
    assert len({d.body["id"] for d in got}) == 1, "a retry resends the same event"
    assert [d.headers["aeg-delivery-count"] for d in got] == ["0", "1", "2", "3"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.29 and gaps[2] >= 0.59, gaps  # 10 s, 30 s (503: 30 s), 60 s
    assert gaps[0] < gaps[1] < gaps[2]
    topic = await settled(sim)
    assert topic["delivered"] == 1 and topic["deadLettered"] == 0


async def test_undeliverable_events_are_dead_lettered(sim: SimHandle, ctl: SimControl, receiver: Receiver) -> None:
    await control(sim, "POST", "/_sim/eventgrid/retry", {"maxAttempts": 3})
    receiver.default = 500
    await subscribe(sim, "users", "updated", eventgrid_url())
    await activate(sim, receiver.url)
    await ctl.create_user(displayName="Ada")
    await receiver.wait_for(3)
    receiver.default = 400
    await ctl.create_user(displayName="Bob")
    await receiver.wait_for(4)
    letters = await _dead_letters(sim, 2)
    by_reason = {d["deadletterreason"]: d for d in letters}
    assert by_reason["MaxDeliveryAttemptsExceeded"]["deliveryattempts"] == 3
    assert by_reason["MaxDeliveryAttemptsExceeded"]["lasthttpstatuscode"] == 500
    assert by_reason["NonRetriableError"]["deliveryattempts"] == 1
    assert by_reason["NonRetriableError"]["lastdeliveryoutcome"] == "BadRequest"
    assert all(d["type"] == "Microsoft.Graph.UserUpdated" and d["data"]["changeType"] == "updated" for d in letters)
    await control(sim, "DELETE", "/_sim/eventgrid/deadletters")
    assert (await control(sim, "GET", "/_sim/eventgrid/deadletters"))["value"] == []


async def test_a_connection_failure_is_retried_until_the_time_to_live(sim: SimHandle, ctl: SimControl) -> None:
    await control(sim, "POST", "/_sim/eventgrid/retry", {"schedule": [0.01], "scale": 1, "ttlSeconds": 0.2})
    await subscribe(sim, "users", "updated", eventgrid_url())
    await activate(sim, "http://127.0.0.1:9/nothing-listens")
    await ctl.create_user(displayName="Ada")
    [letter] = await _dead_letters(sim, 1)
    assert letter["deadletterreason"] == "TimeToLiveExceeded" and letter["lastdeliveryoutcome"] == "SocketError"
    assert letter["deliveryattempts"] > 1


async def test_rich_notifications_carry_encrypted_content_and_validation_tokens(
    sim: SimHandle, ctl: SimControl, receiver: Receiver
) -> None:
    team = await ctl.create_team()
    channel = team["channels"]["General"]
    cert = make_certificate()
    await subscribe(
        sim,
        f"teams/{team['id']}/channels/{channel}/messages",
        "created",
        eventgrid_url(),
        lifecycleNotificationUrl=eventgrid_url(),
        includeResourceData=True,
        encryptionCertificate=cert.public_base64,
        encryptionCertificateId="cert-1",
    )
    await activate(sim, receiver.url)
    await ctl.post_message("hi", team_id=team["id"], channel_id=channel)
    [got] = await receiver.wait_for(1)
    event = got.body
    assert event["type"] == "Microsoft.Graph.ChatMessageCreated"
    assert event["data"]["encryptedContent"]["encryptionCertificateId"] == "cert-1"
    assert len(event["data"]["validationTokens"]) == 1


async def test_the_drop_fault_and_reset_apply_to_eventgrid(sim: SimHandle, ctl: SimControl, receiver: Receiver) -> None:
    await subscribe(sim, "users", "updated", eventgrid_url())
    await activate(sim, receiver.url)
    await control(sim, "POST", "/_sim/delivery", {"drop": True})
    await ctl.create_user(displayName="Ada")
    stats = await control(sim, "GET", "/_sim/stats")
    assert stats["delivery"]["itemsDropped"] == 1 and receiver.got == []
    await control(sim, "POST", "/_sim/reset")
    assert await topics(sim) == []
    assert (await control(sim, "GET", "/_sim/eventgrid/retry"))["scale"] == SCALE


async def test_another_tenants_events_share_the_topic_and_carry_its_tenant(sim: SimHandle, receiver: Receiver) -> None:
    other = "33333333-aaaa-4bbb-8ccc-000000000001"
    await control(sim, "POST", "/_sim/tenants", {"tenant": other, "consented": True}, status=201)
    sub = await subscribe(sim, "users", "updated", eventgrid_url(), tenant=other)
    await activate(sim, receiver.url)
    user = await control(sim, "POST", f"/_sim/users?tenant={other}", {"displayName": "Eve"}, status=201)
    [got] = await receiver.wait_for(1)
    assert got.body["source"] == f"/tenants/{other}/applications/{sim.config.client_id}"
    assert got.body["data"]["tenantId"] == other and got.body["data"]["subscriptionId"] == sub["id"]
    assert got.body["subject"] == f"Users/{user['id']}"
    [topic] = await topics(sim)
    assert topic["source"] == f"/tenants/{other}/applications/{sim.config.client_id}"


async def _dead_letters(sim: SimHandle, count: int) -> list[dict[str, Any]]:
    for _ in range(500):
        letters = (await control(sim, "GET", "/_sim/eventgrid/deadletters"))["value"]
        if len(letters) >= count:
            return list(letters)
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} dead letters")
