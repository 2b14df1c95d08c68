"""The Event Grid channel's pure parts: the partner topic URL, events read as notifications, the settings, the plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from shared.config.settings import Settings
from shared.errors import EventGridEventError, InvalidSettingError, MissingSettingError
from shared.model.event_grid import PartnerTopic, change_type_of, is_event_grid_url, notification_of
from shared.model.resources import DesiredSubscription
from shared.reconcile.plan import plan

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
DRIVE = "drives/b!dGVzdC1kcml2ZS1vbmU/root"
OUR_URL = "https://webhooks.example.com/api/notifications?code=function-key"
TOPIC = PartnerTopic("1f2e3d4c-5b6a-4789-9abc-def012345678", "rg-graphhooks", "graphhooks-topic", "westeurope")
CHANNEL = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": TOPIC.azure_subscription_id,
    "EVENT_GRID_RESOURCE_GROUP": TOPIC.resource_group,
    "EVENT_GRID_PARTNER_TOPIC": TOPIC.name,
    "EVENT_GRID_LOCATION": TOPIC.location,
}


def test_the_topic_url_is_the_eventgrid_form_graph_documents():
    url = TOPIC.url

    assert url.startswith("EventGrid:?")
    assert parse_qs(url.split("?", 1)[1]) == {
        "azuresubscriptionid": [TOPIC.azure_subscription_id],
        "resourcegroup": ["rg-graphhooks"],
        "partnertopic": ["graphhooks-topic"],
        "location": ["westeurope"],
    }
    assert is_event_grid_url(url) and not is_event_grid_url(OUR_URL)


@pytest.mark.parametrize(
    ("event_type", "change"),
    [
        ("Microsoft.Graph.DriveItemUpdated", "updated"),
        ("Microsoft.Graph.UserCreated", "created"),
        ("Microsoft.Graph.GroupDeleted", "deleted"),
        ("Microsoft.Graph.ChatMessageUpdated", "updated"),
        ("Microsoft.Graph.SubscriptionReauthorizationRequired", None),
        ("Contoso.Other", None),
    ],
)
def test_the_change_is_read_from_the_event_type(event_type, change):
    assert change_type_of(event_type) == change


def test_a_onedrive_event_without_change_type_gets_it_from_its_type():
    data = {"subscriptionId": "s", "clientState": "c", "resource": "r", "resourceData": {}}

    item = notification_of("Microsoft.Graph.DriveItemUpdated", data)

    assert item["changeType"] == "updated"
    assert "changeType" not in data  # the event's own data is left as it came


def test_a_change_type_in_the_data_wins_over_the_type():
    item = notification_of("Microsoft.Graph.UserUpdated", {"subscriptionId": "s", "changeType": "deleted"})

    assert item["changeType"] == "deleted"


def test_a_lifecycle_event_is_known_by_its_data_whatever_its_type():
    data = {"subscriptionId": "s", "lifecycleEvent": "reauthorizationRequired"}

    item = notification_of("Microsoft.Graph.SomethingUndocumented", data)

    assert item == data and "changeType" not in item


@pytest.mark.parametrize("data", [None, "text", [1, 2]])
def test_data_that_is_not_an_object_is_refused(data):
    with pytest.raises(EventGridEventError):
        notification_of("Microsoft.Graph.UserUpdated", data)


def test_a_change_neither_type_nor_data_names_is_refused():
    with pytest.raises(EventGridEventError, match="names no change"):
        notification_of("Contoso.Other", {"subscriptionId": "s"})


def _entries(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


def test_an_event_grid_entry_is_delivered_to_the_settings_topic(make_env):
    environ = make_env(GRAPH_SUBSCRIPTIONS=_entries({"resource": "users", "delivery": "eventGrid"}), **CHANNEL)

    [entry] = Settings.from_env(environ).subscriptions

    assert entry.delivery == TOPIC.url


def test_an_entry_may_name_its_own_topic_in_the_same_resource_group(make_env):
    text = _entries({"resource": "users", "delivery": "eventGrid", "partnerTopic": "users-topic"}, {"resource": DRIVE})

    users, drive = Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=text, **CHANNEL)).subscriptions

    assert "partnertopic=users-topic" in users.delivery and "resourcegroup=rg-graphhooks" in users.delivery
    assert drive.delivery == ""  # the default stays the webhook


def test_webhook_entries_need_no_event_grid_setting(make_env):
    settings = Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=_entries({"resource": "users"})))

    assert [s.delivery for s in settings.subscriptions] == [""]


@pytest.mark.parametrize("missing", sorted(CHANNEL))
def test_a_missing_event_grid_setting_is_named_when_an_entry_uses_the_channel(make_env, missing):
    environ = make_env(GRAPH_SUBSCRIPTIONS=_entries({"resource": "users", "delivery": "eventGrid"}), **CHANNEL)
    del environ[missing]

    with pytest.raises(MissingSettingError, match=missing):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EVENT_GRID_AZURE_SUBSCRIPTION_ID", "not-a-guid"),
        ("EVENT_GRID_PARTNER_TOPIC", "a topic with spaces"),
        ("EVENT_GRID_RESOURCE_GROUP", "rg/with/slashes"),
        ("EVENT_GRID_LOCATION", "west-europe!"),
    ],
)
def test_an_unusable_event_grid_setting_is_named(make_env, key, value):
    environ = make_env(GRAPH_SUBSCRIPTIONS=_entries({"resource": "users", "delivery": "eventGrid"}), **CHANNEL)
    environ[key] = value

    with pytest.raises(InvalidSettingError, match=key):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"resource": "users", "delivery": "queue"}, "delivery must be webhook or eventGrid"),
        ({"resource": "users", "partnerTopic": "t-1"}, "partnerTopic goes with delivery eventGrid"),
        ({"resource": "users", "delivery": "eventGrid", "partnerTopic": "x"}, "partner topic name"),
        ({"resource": "users", "delivery": "eventGrid", "partnerTopic": 7}, "partnerTopic must be a topic name"),
    ],
)
def test_a_bad_delivery_is_refused_naming_the_entry(make_env, entry, problem):
    with pytest.raises(InvalidSettingError, match=f"entry 0.*{problem}"):
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=_entries(entry), **CHANNEL))


def test_event_grid_delivery_is_refused_in_a_multi_tenant_deployment(make_env):
    environ = make_env(
        GRAPH_SUBSCRIPTIONS=_entries({"resource": "users", "delivery": "eventGrid"}),
        TENANT_MODE="multi",
        GRAPH_TENANT_ID=None,
        **CHANNEL,
    )

    with pytest.raises(InvalidSettingError, match="not available with TENANT_MODE=multi"):
        Settings.from_env(environ)


def test_a_subscription_moved_to_event_grid_is_recreated_there(make_record, make_remote):
    want = DesiredSubscription(DRIVE, "updated", delivery=TOPIC.url)

    result = plan([want], [make_record()], [make_remote()], NOW, OUR_URL)

    assert [r.delivery for r in result.recreate] == [TOPIC.url]
    assert (result.create, result.renew, result.delete_remote) == ([], [], [])


def test_an_event_grid_subscription_listed_at_graph_is_ours_and_left_alone(make_record, make_remote):
    want = DesiredSubscription(DRIVE, "updated", delivery=TOPIC.url)
    record = make_record(delivery=TOPIC.url)

    result = plan([want], [record], [make_remote(notification_url=TOPIC.url)], NOW, OUR_URL)

    assert (result.create, result.recreate, result.renew, result.delete_remote) == ([], [], [], [])


def test_an_event_grid_subscription_to_a_topic_nobody_here_names_is_never_touched(make_remote):
    other = PartnerTopic(TOPIC.azure_subscription_id, "rg-someone-else", "their-topic", "westeurope")

    result = plan([], [], [make_remote(id="theirs", notification_url=other.url)], NOW, OUR_URL)

    assert result.delete_remote == []
