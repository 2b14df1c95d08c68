"""Subscription sets: the pure expansion, members@delta, and following a group with groups delta."""

from __future__ import annotations

import pytest

from shared.config.subscriptions import parse_desired
from shared.errors import GraphRequestError, InvalidSettingError, ResyncRequiredError
from shared.model.resources import DesiredSubscription
from shared.reconcile.subscription_sets import SubscriptionSets, apply_members_delta, expand, first_query, groups_of
from shared.stores.members import MemberSet

GROUP = "0b1c5d7e-1111-4222-8333-944455556666"
SET = DesiredSubscription("users/{member}/drive/root", "updated", False, GROUP)
PLAIN = DesiredSubscription("drives/b!one/root", "updated")


def test_a_set_expands_to_one_subscription_per_member_and_other_entries_pass_through():
    expanded = expand([PLAIN, SET], {GROUP: {"u2", "u1"}})
    assert expanded == (
        PLAIN,
        DesiredSubscription("users/u1/drive/root", "updated"),
        DesiredSubscription("users/u2/drive/root", "updated"),
    )
    assert all(d.for_each_member_of is None for d in expanded)


def test_an_unknown_membership_never_reads_as_an_empty_one():
    with pytest.raises(KeyError):
        expand([SET], {})


def test_a_member_also_listed_on_its_own_is_desired_once():
    own = DesiredSubscription("users/u1/drive/root", "updated")
    assert expand([own, SET], {GROUP: {"u1"}}) == (own,)


def test_groups_are_listed_once():
    other = DesiredSubscription("users/{member}/drive/root", "updated", False, "g2")
    assert groups_of([SET, PLAIN, other, SET]) == [GROUP, "g2"]


def test_members_delta_adds_users_drops_removed_ones_and_ignores_other_types(payload):
    page = payload("directory-groups-delta-page.json")["value"]
    after = apply_members_delta(frozenset({"49320844-be99-4164-8167-87ff5d047ace", "keep"}), GROUP, page)
    assert after == {"693acd06-2877-4339-8ade-b704261fe7a0", "keep"}


def test_a_removed_group_empties_the_set():
    assert apply_members_delta(frozenset({"u1"}), GROUP, [{"id": GROUP, "@removed": {"reason": "deleted"}}]) == set()


def test_a_set_entry_is_checked_as_one_member_resource():
    with pytest.raises(InvalidSettingError, match="no change source reads it"):
        parse_desired(f'[{{"resource": "users/{{member}}/todo", "forEachMemberOf": "{GROUP}"}}]')
    [entry] = parse_desired(f'[{{"resource": "users/{{member}}/drive/root", "forEachMemberOf": "{GROUP}"}}]')
    assert entry.for_each_member_of == GROUP


class FakeGraph:
    """groups delta as pages keyed by URL; the first call is by path."""

    def __init__(self, pages, first):
        self.pages, self.first, self.calls = pages, first, []

    async def fetch_path(self, path, query=None):
        self.calls.append((path, query))
        return self.pages[self.first]

    async def fetch_url(self, url):
        self.calls.append(url)
        page = self.pages[url]
        if isinstance(page, Exception):
            raise page
        return page


class FakeStore:
    def __init__(self, stored=None):
        self.stored = stored or MemberSet()
        self.saves = []

    async def load(self, group_id):
        return self.stored

    async def save(self, group_id, before, after):
        self.saves.append((before, after))
        self.stored = after


def member(user_id, removed=False):
    entry = {"@odata.type": "#microsoft.graph.user", "id": user_id}
    return {**entry, "@removed": {"reason": "deleted"}} if removed else entry


async def test_the_first_refresh_enumerates_across_pages_and_stores_the_delta_link():
    pages = {
        "first": {"value": [{"id": GROUP, "members@delta": [member("u1")]}], "@odata.nextLink": "p2"},
        "p2": {"value": [{"id": GROUP, "members@delta": [member("u2")]}], "@odata.deltaLink": "d1"},
    }
    graph, store = FakeGraph(pages, "first"), FakeStore()
    assert await SubscriptionSets(graph, store).refresh(GROUP) == {"u1", "u2"}
    assert graph.calls == [("groups/delta", first_query(GROUP)), "p2"]
    assert first_query(GROUP) == {"$filter": f"id eq '{GROUP}'", "$select": "members"}
    assert store.stored == MemberSet(frozenset({"u1", "u2"}), "d1")


async def test_a_later_refresh_is_one_delta_call_from_the_stored_link():
    pages = {
        "d1": {"value": [{"id": GROUP, "members@delta": [member("u3"), member("u1", True)]}], "@odata.deltaLink": "d2"}
    }
    graph, store = FakeGraph(pages, "unused"), FakeStore(MemberSet(frozenset({"u1", "u2"}), "d1"))
    expanded = await SubscriptionSets(graph, store).expand([SET])
    assert {d.resource for d in expanded} == {"users/u2/drive/root", "users/u3/drive/root"}
    assert graph.calls == ["d1"]
    assert store.stored == MemberSet(frozenset({"u2", "u3"}), "d2")


async def test_an_expired_link_enumerates_again_replacing_the_stored_membership():
    expired = GraphRequestError("Graph answered 400 syncStateNotFound", 400, "syncStateNotFound")
    pages = {
        "d1": expired,
        "first": {"value": [{"id": GROUP, "members@delta": [member("u9")]}], "@odata.deltaLink": "d9"},
    }
    graph, store = FakeGraph(pages, "first"), FakeStore(MemberSet(frozenset({"u1"}), "d1"))
    assert await SubscriptionSets(graph, store).refresh(GROUP) == {"u9"}
    assert store.saves == [(MemberSet(frozenset({"u1"}), "d1"), MemberSet(frozenset({"u9"}), "d9"))]


async def test_a_refresh_that_fails_raises_and_stores_nothing():
    graph = FakeGraph({"d1": GraphRequestError("Graph answered 403 Forbidden", 403, "Forbidden")}, "unused")
    store = FakeStore(MemberSet(frozenset({"u1"}), "d1"))
    with pytest.raises(GraphRequestError) as raised:
        await SubscriptionSets(graph, store).expand([SET])
    assert not isinstance(raised.value, ResyncRequiredError)
    assert store.saves == []


async def test_entries_without_sets_make_no_graph_call():
    graph, store = FakeGraph({}, "unused"), FakeStore()
    assert await SubscriptionSets(graph, store).expand([PLAIN]) == (PLAIN,)
    assert graph.calls == []
