"""Teams chat messages in settings: accepted with resource data, refused without, certificates required."""

from __future__ import annotations

import json

import pytest

from shared.config.settings import Settings
from shared.errors import InvalidSettingError, MissingSettingError
from shared.model.lifetimes import max_lifetime
from shared.sources.teams import TeamsMessageSource

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_TENANT_ID": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    "GRAPH_CLIENT_ID": "7f1b2b5c-1111-4c3c-9e2e-0a0b0c0d0e0f",
    "GRAPH_CLIENT_SECRET": "secret",
    "NOTIFICATION_URL": "https://app.example.com/api/notifications",
    "LIFECYCLE_NOTIFICATION_URL": "https://app.example.com/api/lifecycle",
}
CHANNEL = "teams/team-1/channels/19:general@thread.tacv2/messages"
CERTIFICATE = {"NOTIFICATION_CERTIFICATE": "/secrets/notifications.pfx", "NOTIFICATION_CERTIFICATE_ID": "cert-1"}


def settings(entries: list[dict[str, object]], **extra: str) -> Settings:
    return Settings.from_env(BASE | extra | {"GRAPH_SUBSCRIPTIONS": json.dumps(entries)})


@pytest.mark.parametrize("resource", [CHANNEL, "chats/getAllMessages"])
def test_teams_messages_with_resource_data_are_accepted(resource: str) -> None:
    entry = {"resource": resource, "changeType": "created,updated,deleted", "includeResourceData": True}
    found = settings([entry], **CERTIFICATE)
    assert found.subscriptions[0].include_resource_data
    assert found.resource_data is not None and found.resource_data.current.certificate_id == "cert-1"


def test_teams_messages_without_resource_data_are_refused_naming_the_entry() -> None:
    with pytest.raises(InvalidSettingError, match=r"entry 0 \('chats/getAllMessages'\).*includeResourceData"):
        settings([{"resource": "chats/getAllMessages", "changeType": "created"}], **CERTIFICATE)


def test_resource_data_without_a_certificate_names_the_setting() -> None:
    with pytest.raises(MissingSettingError) as caught:
        settings([{"resource": CHANNEL, "changeType": "created", "includeResourceData": True}])
    assert caught.value.key == "NOTIFICATION_CERTIFICATE"


def test_a_certificate_without_its_id_names_the_setting() -> None:
    entry = {"resource": CHANNEL, "changeType": "created", "includeResourceData": True}
    with pytest.raises(MissingSettingError) as caught:
        settings([entry], NOTIFICATION_CERTIFICATE="/secrets/notifications.pfx")
    assert caught.value.key == "NOTIFICATION_CERTIFICATE_ID"


def test_the_previous_certificate_keeps_the_id_unless_given_one() -> None:
    entry = {"resource": CHANNEL, "changeType": "created", "includeResourceData": True}
    found = settings([entry], **CERTIFICATE, NOTIFICATION_CERTIFICATE_PREVIOUS="/secrets/old.pfx")
    assert found.resource_data is not None and found.resource_data.previous is not None
    assert found.resource_data.previous.certificate_id == "cert-1"


def test_a_changetype_graph_refuses_on_chat_messages_is_named() -> None:
    with pytest.raises(InvalidSettingError, match="changeType 'moved'"):
        settings([{"resource": CHANNEL, "changeType": "moved", "includeResourceData": True}], **CERTIFICATE)


def test_chat_message_subscriptions_live_up_to_4320_minutes() -> None:
    assert max_lifetime(CHANNEL, include_resource_data=True).total_seconds() == 4320 * 60


async def test_the_teams_source_reads_no_page_since_changes_come_with_their_notifications() -> None:
    source = TeamsMessageSource()
    assert source.handles(CHANNEL) and source.handles("chats/getAllMessages") and not source.handles("drives/x/root")
    page = await source.page(CHANNEL, None)
    assert page.changes == [] and page.delta_link is not None
