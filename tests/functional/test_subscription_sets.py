"""Subscription sets end to end: one subscription per member of a group, following joins and leaves.

The set's members are followed with groups delta between renew ticks. Member
resources use users' drives (``users/{member}/drive/root``), a kind that exists now.
"""

from __future__ import annotations

import json

import pytest

from shared.errors import GraphRequestError
from tests.functional.stacks import Stack

GROUP = "0b1c5d7e-1111-4222-8333-944455556666"
SET = [{"resource": "users/{member}/drive/root", "changeType": "updated", "forEachMemberOf": GROUP}]


async def with_drives(stack: Stack, count: int, name: str) -> list[str]:
    """``count`` users, each with a OneDrive."""
    ids = []
    for n in range(count):
        user = await stack.control.create_user(displayName=f"{name} {n}")
        await stack.control.create_drive(f"b!drive-{user['id']}", userId=user["id"])
        ids.append(user["id"])
    return ids


async def member_resources(stack: Stack) -> set[str]:
    return {s["resource"] for s in await stack.control.subscriptions() if s["resource"].startswith("users/")}


async def test_a_set_creates_one_subscription_per_member_and_follows_joins_and_leaves(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps(SET))
    members = await with_drives(stack, 3, "Member")
    await stack.control.create_group(GROUP, members=members, displayName="Sales")

    first = await stack.reconcile()
    assert (first.created, first.failed) == (3, 0)
    assert await member_resources(stack) == {f"users/{m}/drive/root" for m in members}

    [newcomer] = await with_drives(stack, 1, "Newcomer")
    await stack.control.add_members(GROUP, [newcomer])
    joined = await stack.reconcile()
    assert (joined.created, joined.deleted, joined.failed) == (1, 0, 0)
    assert f"users/{newcomer}/drive/root" in await member_resources(stack)

    await stack.control.remove_member(GROUP, members[0])
    left = await stack.reconcile()
    assert (left.created, left.deleted, left.failed) == (0, 1, 0)
    assert await member_resources(stack) == {f"users/{m}/drive/root" for m in [*members[1:], newcomer]}
    assert {r.resource for r in await stack.store.list()} == await member_resources(stack)


async def test_a_tick_with_no_membership_change_writes_nothing_and_reads_one_delta_page(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps(SET))
    members = await with_drives(stack, 2, "Member")
    await stack.control.create_group(GROUP, members=members)
    await stack.reconcile()
    await stack.control.reset_stats()

    before = (await stack.control.directory_stats())["groups"]
    again = await stack.reconcile()
    assert (again.created, again.deleted, again.renewed, again.failed) == (0, 0, 0, 0)
    assert (await stack.control.stats())["subscriptionWrites"] == 0
    after = (await stack.control.directory_stats())["groups"]
    # The membership is followed from the stored deltaLink: one request, no enumeration of the group.
    assert after["deltaRequests"] - before["deltaRequests"] == 1
    assert after["enumerations"] == before["enumerations"] == 1


async def test_a_member_events_arrive_from_their_own_drive(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps(SET))
    [member] = await with_drives(stack, 1, "Member")
    await stack.control.create_group(GROUP, members=[member])
    await stack.reconcile()

    item = await stack.control.create_item(f"b!drive-{member}", "notes.txt", "hello")
    await stack.pump(lambda: any(e["itemId"] == item["id"] for e in stack.events))
    [event] = [e for e in stack.events if e["itemId"] == item["id"]]
    assert (event["kind"], event["changeType"], event["resource"]) == (
        "driveItem",
        "created",
        f"users/{member}/drive/root",
    )


async def test_an_unreadable_membership_stops_the_tick_and_deletes_nothing(stack_factory):
    stack = await stack_factory(subscriptions=json.dumps(SET))
    members = await with_drives(stack, 2, "Member")
    await stack.control.create_group(GROUP, members=members)
    await stack.reconcile()
    await stack.control.fault(r"^/groups/delta", 403, count=10)

    with pytest.raises(GraphRequestError, match="403"):
        await stack.reconcile()
    assert await member_resources(stack) == {f"users/{m}/drive/root" for m in members}


async def test_the_member_store_writes_only_the_difference_and_keeps_the_link(azurite, unique_name):
    from shared.stores.clients import table_client
    from shared.stores.members import MemberSet, MemberStore

    async with table_client(azurite.connection_string, unique_name("members")) as client:
        store = MemberStore(client)
        await store.setup()
        assert await store.load(GROUP) == MemberSet()
        many = MemberSet(frozenset(f"user-{n:04d}" for n in range(250)), "https://graph/groups/delta?$deltatoken=1")
        await store.save(GROUP, MemberSet(), many)  # three transactions of at most 100
        assert await store.load(GROUP) == many
        fewer = MemberSet(many.members - {"user-0000", "user-0249"} | {"user-new"}, "https://graph/next")
        await store.save(GROUP, many, fewer)
        await store.save(GROUP, many, fewer)  # repeated after a crash: deletes of rows already gone
        assert await store.load(GROUP) == fewer
        assert await store.load("another-group") == MemberSet()
