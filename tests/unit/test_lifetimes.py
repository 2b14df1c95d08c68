"""Subscription lifetimes per Graph's table, the expiry to ask for, and when to renew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model.lifetimes import MINIMUM_LIFETIME, max_lifetime, next_expiry, renewal_due

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("resource", "minutes"),
    [
        ("drives/b!dGVzdC1kcml2ZS1vbmU/root", 42300),
        ("me/drive/root", 42300),
        ("users/5f0c1a2b/drive/root", 42300),
        ("groups/0f1e2d3c/drive/root", 42300),
        ("sites/contoso.sharepoint.com,1,2/drive/root", 42300),
        ("sites/contoso.sharepoint.com,1,2/lists/3c4d5e6f", 42300),
        ("users/5f0c1a2b/messages", 10080),
        ("me/mailFolders('Inbox')/messages", 10080),
        ("/me/mailfolders('inbox')/messages", 10080),
        ("users/5f0c1a2b/mailFolders/inbox/messages?$filter=isRead eq false", 10080),
        ("me/events", 10080),
        ("users/5f0c1a2b/contacts", 10080),
        ("users", 41760),
        ("groups", 41760),
        ("users/5f0c1a2b", 41760),
        ("chats/getAllMessages", 4320),
        ("chats/19:meeting_abc@thread.v2/messages", 4320),
        ("teams/0f1e2d3c/channels/19:abc@thread.tacv2/messages", 4320),
        ("communications/presences/5f0c1a2b", 60),
        ("communications/presences?$filter=id in ('5f0c1a2b')", 60),
        ("security/alerts?$filter=status eq 'newAlert'", 43200),
        ("groups/0f1e2d3c/conversations", 4230),
        ("communications/callRecords", 4230),
        ("me/todo/lists/AAMk/tasks", 4230),
    ],
)
def test_max_lifetime_follows_graphs_table(resource, minutes):
    assert max_lifetime(resource) == timedelta(minutes=minutes)


@pytest.mark.parametrize("resource", ["users/5f0c1a2b/messages", "me/events", "users/5f0c1a2b/contacts"])
def test_outlook_resources_with_resource_data_live_one_day(resource):
    assert max_lifetime(resource, include_resource_data=True) == timedelta(minutes=1440)


@pytest.mark.parametrize("resource", ["drives/b!x/root", "users", "chats/getAllMessages", "security/alerts"])
def test_resource_data_does_not_change_other_lifetimes(resource):
    assert max_lifetime(resource, include_resource_data=True) == max_lifetime(resource)


def test_an_unknown_resource_gets_a_lifetime_every_resource_accepts():
    assert max_lifetime("solutions/somethingNew") == timedelta(minutes=4230)


@pytest.mark.parametrize(
    "resource",
    [
        "drives/b!x/root",
        "sites/s/lists/l",
        "users/u/messages",
        "users",
        "chats/getAllMessages",
        "communications/presences/u",
        "security/alerts",
        "solutions/somethingNew",
    ],
)
def test_next_expiry_stays_within_the_maximum(resource):
    expiry = next_expiry(resource, NOW)

    assert NOW + MINIMUM_LIFETIME <= expiry <= NOW + max_lifetime(resource)


def test_next_expiry_asks_for_nearly_the_whole_lifetime():
    expiry = next_expiry("drives/b!x/root", NOW)

    assert expiry > NOW + timedelta(minutes=42300) - timedelta(minutes=15)


def test_next_expiry_for_presence_is_under_an_hour_but_at_least_45_minutes():
    lifetime = next_expiry("communications/presences/u", NOW) - NOW

    assert timedelta(minutes=45) <= lifetime < timedelta(minutes=60)


def test_a_subscription_just_created_is_not_due_for_renewal():
    resource = "drives/b!x/root"

    assert renewal_due(resource, next_expiry(resource, NOW), NOW) is False


def test_renewal_is_not_due_before_half_the_lifetime():
    half = timedelta(minutes=42300) / 2

    assert renewal_due("drives/b!x/root", NOW + half + timedelta(minutes=1), NOW) is False


def test_renewal_is_due_at_half_the_lifetime():
    half = timedelta(minutes=42300) / 2

    assert renewal_due("drives/b!x/root", NOW + half, NOW) is True


def test_renewal_is_due_after_half_the_lifetime():
    assert renewal_due("drives/b!x/root", NOW + timedelta(days=3), NOW) is True


def test_renewal_is_due_once_expired():
    assert renewal_due("drives/b!x/root", NOW - timedelta(minutes=1), NOW) is True


def test_renewal_uses_the_resources_own_lifetime():
    # 40 minutes left: early for presence (60 min max), late for a drive (42,300 min max).
    expires = NOW + timedelta(minutes=40)

    assert renewal_due("communications/presences/u", expires, NOW) is False
    assert renewal_due("drives/b!x/root", expires, NOW) is True
