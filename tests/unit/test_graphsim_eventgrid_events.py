"""The simulator's CloudEvents for Graph notifications match the shapes of Microsoft's Event Grid articles (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.graphsim.errors import GraphError
from devtools.graphsim.eventgrid import parse_url
from devtools.graphsim.eventgrid_events import SUBJECT_KEY, cloud_event, event_type

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "eventgrid"
TENANT, APP = "84bd8158-6d4d-4958-8b9f-9d6445542f95", "22222222-2222-2222-2222-222222222222"
NOW = datetime(2026, 2, 13, 10, 0, tzinfo=UTC)


def documented(name: str) -> dict[str, Any]:
    return dict(json.loads((PAYLOADS / name).read_text())["event"])


def notification(**fields: Any) -> dict[str, Any]:
    base = {
        "subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727",
        "subscriptionExpirationDateTime": "2026-02-13T11:00:00.0000000Z",
        "clientState": "secretClientValue",
        "tenantId": TENANT,
    }
    return base | fields


def entra(kind: str, ident: str, change: str) -> dict[str, Any]:
    path = f"{kind}s/{ident}"
    data = {"@odata.type": f"#Microsoft.Graph.{kind}", "@odata.id": path, "id": ident}
    return notification(changeType=change, resource=path, resourceData=data)


@pytest.mark.parametrize(
    ("name", "item"),
    [
        ("user-updated.json", entra("User", "7540ee2b-ec66-4735-babd-ba1b2aa6c585", "updated")),
        ("user-deleted.json", entra("User", "7540ee2b-ec66-4735-babd-ba1b2aa6c585", "deleted")),
        ("group-deleted.json", entra("Group", "cf653542-be15-4568-87d4-37613d8a21f5", "deleted")),
    ],
)
def test_directory_events_have_the_documented_envelope(name: str, item: dict[str, Any]) -> None:
    doc, event = documented(name), cloud_event(item, TENANT, APP, NOW)
    assert set(event) == set(doc)
    for key in ("type", "source", "subject", "specversion", "datacontenttype"):
        assert event[key] == doc[key], key
    assert event["data"]["changeType"] == doc["data"]["changeType"]
    assert event["data"]["resource"] == doc["data"]["resource"]


def test_drive_and_list_events_have_the_documented_data() -> None:
    drive = notification(changeType="updated", resource="drives/b!x/root") | {
        SUBJECT_KEY: "driveItem/01BYE5RZ56Y2GOVW7725BZO354PWSELRRZ"
    }
    listed = notification(changeType="updated", resource="sites/contoso/lists/7")
    for item, name in ((drive, "drive-item-updated.json"), (listed, "list-updated.json")):
        doc, event = documented(name), cloud_event(item, TENANT, APP, NOW)
        assert (event["type"], event["subject"], event["source"]) == (doc["type"], doc["subject"], doc["source"])
        assert "changeType" not in event["data"] and "changeType" not in doc["data"]
        assert event["data"]["resourceData"] == doc["data"]["resourceData"]
        assert event["data"]["expirationDateTime"] == "2026-02-13T11:00:00.0000000Z"
        assert SUBJECT_KEY not in event["data"]


def test_lifecycle_events_are_typed_and_keep_lifecycle_event() -> None:
    doc = documented("subscription-reauthorization-required.json")
    event = cloud_event(notification(lifecycleEvent="reauthorizationRequired"), TENANT, APP, NOW)
    assert event["type"] == doc["type"] and event["subject"] == doc["subject"]
    assert event["data"] == doc["data"]
    assert event_type({"lifecycleEvent": "missed"}) == "Microsoft.Graph.SubscriptionMissed"
    assert event_type({"lifecycleEvent": "subscriptionRemoved"}) == "Microsoft.Graph.SubscriptionRemoved"


def test_outlook_teams_and_the_known_issue_types() -> None:
    message = {"@odata.type": "#Microsoft.OutlookServices.Message", "id": "m1"}
    assert event_type({"changeType": "created", "resourceData": message}) == "Microsoft.Graph.MessageCreated"
    chat = {"@odata.type": "#Microsoft.Graph.chatMessage", "id": "c1"}
    assert event_type({"changeType": "deleted", "resourceData": chat}) == "Microsoft.Graph.ChatMessageDeleted"
    # microsoft-entra-events.md: a created user or group arrives as ...Updated (a known issue).
    user = {"@odata.type": "#Microsoft.Graph.User", "id": "u1"}
    assert event_type({"changeType": "created", "resourceData": user}) == "Microsoft.Graph.UserUpdated"


@pytest.mark.parametrize(
    "url",
    [
        "EventGrid:?resourcegroup=rg&partnertopic=t&location=westeurope",
        "EventGrid:?azuresubscriptionid=x&resourcegroup=rg&partnertopic=t&location=westeurope",
        "EventGrid:?azuresubscriptionid=8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e&resourcegroup=rg&partnertopic=t&location=West%20Europe",
    ],
)
def test_malformed_eventgrid_urls_are_graph_400s(url: str) -> None:
    with pytest.raises(GraphError) as caught:
        parse_url(url, "notificationUrl")
    assert caught.value.status == 400 and caught.value.code == "InvalidRequest"


def test_an_eventgrid_url_names_its_topic() -> None:
    key = parse_url(
        "EventGrid:?azuresubscriptionid=8A8A8A8A-4B4B-4C4C-4D4D-12E12E12E12E&resourcegroup=yourResourceGroup"
        "&partnertopic=yourPartnerTopic&location=westcentralus",
        "notificationUrl",
    )
    assert (key.resource_group, key.name, key.location) == ("yourResourceGroup", "yourPartnerTopic", "westcentralus")
    assert key.resource_id.endswith(
        "/resourceGroups/yourResourceGroup/providers/Microsoft.EventGrid/partnerTopics/yourPartnerTopic"
    )
