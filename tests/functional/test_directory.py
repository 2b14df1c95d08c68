"""Users and groups end to end: subscriptions, notifications, users/groups delta, created/updated/deleted events.

Real Azurite and the Graph simulator; the queue trigger is played by the stack's pump.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema

from shared.clock import parse_time, utcnow
from tests.functional.stacks import Stack

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())


# Made long before subscribing: a baseline reports only what was created moments before it.
BEFORE = {"createdDateTime": "2024-03-01T09:00:00Z"}


def changes(stack: Stack, object_id: str) -> list[str]:
    return [e["changeType"] for e in stack.events if e["itemId"] == object_id]


async def test_users_subscription_lives_41760_minutes_and_the_baseline_is_silent(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps([{"resource": "users", "changeType": "updated,deleted"}]))
    await stack.control.create_user(displayName="Existing One", **BEFORE)
    await stack.reconcile()
    await stack.pump(lambda: True)
    [sub] = [s for s in await stack.control.subscriptions() if s["resource"] == "users"]
    lifetime = parse_time(sub["expirationDateTime"]) - utcnow()
    assert timedelta(minutes=41760 - 10) < lifetime <= timedelta(minutes=41760)
    assert stack.events == []


async def test_a_user_new_to_the_index_is_created_then_updated_then_deleted(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps([{"resource": "users", "changeType": "updated,deleted"}]))
    existing = await stack.control.create_user(displayName="Existing One", **BEFORE)
    await stack.reconcile()
    await stack.pump(lambda: True)

    user = await stack.control.create_user(displayName="Adele Vance", jobTitle="Engineer")
    await stack.pump(lambda: len(stack.events) >= 1)
    await stack.control.update_directory_object("users", existing["id"], jobTitle="Manager")
    await stack.pump(lambda: len(stack.events) >= 2)
    await stack.control.delete_directory_object("users", user["id"])
    await stack.pump(lambda: len(stack.events) >= 3)

    assert changes(stack, user["id"]) == ["created", "deleted"]
    assert changes(stack, existing["id"]) == ["updated"], "known from the baseline: updated, not created"
    created = stack.events[0]
    assert created["kind"] == "user" and created["item"]["displayName"] == "Adele Vance"
    assert created["containerId"] == "users"
    for event in stack.events:
        jsonschema.validate(event, SCHEMA)


async def test_a_membership_change_arrives_as_members_delta_in_a_group_event(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps([{"resource": "groups", "changeType": "updated,deleted"}]))
    alice = await stack.control.create_user(displayName="Alice", **BEFORE)
    bob = await stack.control.create_user(displayName="Bob", **BEFORE)
    group = await stack.control.create_group(displayName="Team", members=[alice["id"]], **BEFORE)
    await stack.reconcile()
    await stack.pump(lambda: True)

    await stack.control.add_members(group["id"], [bob["id"]])
    await stack.pump(lambda: len(stack.events) >= 1)
    await stack.control.remove_member(group["id"], alice["id"])
    await stack.pump(lambda: len(stack.events) >= 2)

    joined, left = stack.events
    assert (joined["kind"], joined["changeType"], left["changeType"]) == ("group", "updated", "updated")
    assert [m["id"] for m in joined["item"]["members@delta"]] == [bob["id"]]
    assert left["item"]["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": alice["id"], "@removed": {"reason": "deleted"}}
    ]
    for event in stack.events:
        jsonschema.validate(event, SCHEMA)


async def test_an_expired_directory_token_enumerates_again_and_reports_deletions(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps([{"resource": "users", "changeType": "updated,deleted"}]))
    kept = await stack.control.create_user(displayName="Kept", **BEFORE)
    gone = await stack.control.create_user(displayName="Gone", **BEFORE)
    await stack.reconcile()
    await stack.pump(lambda: True)
    await stack.control.delivery(drop=True)
    await stack.control.delete_directory_object("users", gone["id"])
    await stack.control.expire_directory_tokens("users")
    await stack.request_sync(await stack.record())
    await stack.pump(lambda: len(stack.events) >= 1)

    assert [(e["itemId"], e["changeType"], e["resync"]) for e in stack.events] == [(gone["id"], "deleted", True)]
    assert changes(stack, kept["id"]) == []


async def test_delta_token_latest_starts_at_now_and_the_delta_link_then_shows_later_changes(stack_factory):
    stack = await stack_factory()
    await stack.control.create_user(displayName="Before")
    graph = stack.worker.reconciler._graph

    latest = await graph.fetch_path("users/delta", {"$deltaToken": "latest", "$select": "id,displayName"})
    assert latest["value"] == [] and "@odata.nextLink" not in latest
    after = await stack.control.create_user(displayName="After", jobTitle="not selected")
    changed = await graph.fetch_url(latest["@odata.deltaLink"])
    assert [(u["id"], u["displayName"], "jobTitle" in u) for u in changed["value"]] == [(after["id"], "After", False)]
