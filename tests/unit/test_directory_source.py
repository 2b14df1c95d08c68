"""The users and groups source: delta objects as changes, versions, expired tokens, and the settings."""

from __future__ import annotations

import pytest

from shared.config.subscriptions import parse_desired
from shared.errors import GraphRequestError, InvalidSettingError, ResyncRequiredError
from shared.model.cursor import Mode
from shared.model.events import change_type_of
from shared.model.index import Known
from shared.sources.directory import SELECT, DirectorySource, to_change, to_page, version_of

GROUP = "0b1c5d7e-1111-4222-8333-944455556666"


class FakeGraph:
    def __init__(self, body=None, error=None):
        self.body, self.error, self.calls = body, error, []

    async def fetch_url(self, url):
        self.calls.append(("url", url))
        if self.error:
            raise self.error
        return self.body

    async def fetch_path(self, path, query=None):
        self.calls.append(("path", path, query))
        return self.body


def test_a_groups_page_keeps_members_delta_in_the_item_and_removed_objects_are_deletions(payload):
    page = to_page("groups", payload("directory-groups-delta-page.json"))
    group, removed = page.changes
    assert page.container_id == "groups" and page.next_link and page.delta_link is None
    assert group.item_id == GROUP and len(group.item["members@delta"]) == 3
    assert (removed.item_id, removed.version, removed.item) == ("5e2a8a3b-2222-4333-8444-a55566667777", None, None)


def test_the_version_is_stable_and_changes_with_the_content():
    user = {"id": "u1", "displayName": "Adele", "jobTitle": "Engineer"}
    assert version_of(user) == version_of(dict(reversed(list(user.items()))))
    assert version_of(user) != version_of({**user, "jobTitle": "Manager"})


def test_an_object_new_to_the_index_is_created_in_a_delta_pass_and_silent_in_an_enumeration(now):
    change = to_change({"id": "u1", "displayName": "Adele"})
    assert change_type_of(change, None, Mode.DELTA, None) == "created"
    assert change_type_of(change, None, Mode.BASELINE, now) is None
    assert change_type_of(change, None, Mode.RESYNC, now) is None
    assert change_type_of(change, None, Mode.FULL, now) == "created"
    assert change_type_of(change, Known("other"), Mode.RESYNC, now) == "updated"


async def test_each_source_reads_its_own_collection_with_a_small_select():
    users, groups = FakeGraph({"value": [], "@odata.deltaLink": "d"}), FakeGraph({"value": [], "@odata.deltaLink": "d"})
    user_source, group_source = DirectorySource(users, "users"), DirectorySource(groups, "groups")
    assert (user_source.kind, group_source.kind) == ("user", "group")
    assert user_source.handles("users") and not user_source.handles("groups") and group_source.handles("/groups")
    await user_source.page("users", None)
    await group_source.page("groups", None)
    assert users.calls == [("path", "users/delta", {"$select": SELECT["users"]})]
    assert groups.calls == [("path", "groups/delta", {"$select": SELECT["groups"]})]
    assert "members" in SELECT["groups"]


async def test_an_expired_token_asks_for_a_fresh_enumeration():
    graph = FakeGraph(error=GraphRequestError("Graph answered 400 syncStateNotFound", 400, "syncStateNotFound"))
    with pytest.raises(ResyncRequiredError) as raised:
        await DirectorySource(graph, "users").page("users", "https://graph.microsoft.com/v1.0/users/delta?x")
    assert raised.value.location is None  # the synchronizer then enumerates from the first page


async def test_other_errors_pass_through():
    graph = FakeGraph(error=GraphRequestError("Graph answered 403 Forbidden", 403, "Forbidden"))
    with pytest.raises(GraphRequestError) as raised:
        await DirectorySource(graph, "users").page("users", "https://graph.microsoft.com/v1.0/users/delta?x")
    assert not isinstance(raised.value, ResyncRequiredError)


def test_users_and_groups_entries_are_accepted_with_updated_and_deleted():
    entries = parse_desired('[{"resource": "users", "changeType": "updated,deleted"}, {"resource": "groups"}]')
    assert [(e.resource, e.change_type) for e in entries] == [("users", "updated,deleted"), ("groups", "updated")]


def test_created_on_users_is_rejected_and_named():
    with pytest.raises(InvalidSettingError, match=r"entry 0 \('users'\): changeType 'created' is refused"):
        parse_desired('[{"resource": "users", "changeType": "created,updated"}]')


def test_a_single_user_resource_no_source_reads_is_rejected_and_named():
    with pytest.raises(InvalidSettingError, match=r"entry 0 \('users/u1'\): no change source reads it"):
        parse_desired('[{"resource": "users/u1", "changeType": "updated"}]')


def test_users_and_groups_subscriptions_live_up_to_41760_minutes():
    from datetime import timedelta

    from shared.model.lifetimes import max_lifetime

    assert max_lifetime("users") == max_lifetime("groups") == timedelta(minutes=41760)


def _classify(changes, index, mode, now):
    from shared.model.events import Context, classify_page

    context = Context(mode, "group", "groups", "sub-1", "groups", now, pass_id="p1", since=now)
    return classify_page(changes, index, context)


def _indexed(result):
    return {w.item_id: Known(w.version, w.deleted, w.life, w.detail) for w in result.writes}


def test_a_group_with_members_is_no_news_to_a_resync_but_each_membership_change_is_news(now):
    team = {"id": "g1", "displayName": "Team", "createdDateTime": "2024-03-01T09:00:00Z"}
    listed = {**team, "members@delta": [{"id": "alice"}, {"id": "bob"}]}  # an enumeration lists every member
    baseline = _classify([to_change(listed)], {}, Mode.BASELINE, now)
    index = _indexed(baseline)
    assert baseline.events == []

    joined = _classify([to_change({**team, "members@delta": [{"id": "carol"}]})], index, Mode.DELTA, now)
    index = _indexed(joined)
    left = _classify([to_change({**team, "members@delta": [{"id": "carol", "@removed": {}}]})], index, Mode.DELTA, now)
    index = _indexed(left)
    again = _classify([to_change({**team, "members@delta": [{"id": "carol"}]})], index, Mode.DELTA, now)
    resync = _classify(
        [to_change({**listed, "members@delta": [{"id": "alice"}, {"id": "bob"}]})], _indexed(again), Mode.RESYNC, now
    )

    ids = [r.events[0].id for r in (joined, left, again)]
    assert [r.events[0].change_type for r in (joined, left, again)] == ["updated"] * 3
    assert len(set(ids)) == 3, "carol joining twice is two changes, under two ids"
    assert resync.events == [], "a resync listing every member of an unchanged group is no news"
    repeat = _classify([to_change({**team, "members@delta": [{"id": "carol"}]})], _indexed(again), Mode.DELTA, now)
    assert repeat.events == [], "the same round read again is no news"
