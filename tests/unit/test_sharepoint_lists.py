"""SharePoint list webhooks: settings, URL derivation, change records, the expired-token error, the source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.config.settings import Settings
from shared.config.subscriptions import notification_url_for, parse_sharepoint
from shared.errors import InvalidSettingError, ResyncRequiredError
from shared.model.lifetimes import max_lifetime, renewal_due
from shared.model.sharepoint import ChangeRecord, SharePointList, expired_token, latest_per_item, list_of, parse_changes
from shared.sources.sharepoint_changes import SharePointListSource

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"
LIST = "b9f6f714-9df8-470b-b22e-653855e1c181"
SITE = "https://contoso.sharepoint.com/sites/team"
BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_TENANT_ID": "tenant",
    "GRAPH_CLIENT_ID": "client",
    "GRAPH_CLIENT_SECRET": "secret",
    "NOTIFICATION_URL": "https://app.example/api/notifications?code=key",
    "LIFECYCLE_NOTIFICATION_URL": "https://app.example/api/lifecycle?code=key",
}


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def test_settings_read_sharepoint_lists_and_derive_their_url() -> None:
    env = {**BASE_ENV, "SHAREPOINT_SUBSCRIPTIONS": json.dumps([{"site": SITE + "/", "list": LIST.upper()}])}
    settings = Settings.from_env(env)
    assert settings.sharepoint_subscriptions == (SharePointList(SITE, LIST),)
    assert settings.sharepoint_notification_url == "https://app.example/api/sharepoint?code=key"


def test_an_explicit_sharepoint_notification_url_wins() -> None:
    env = {**BASE_ENV, "SHAREPOINT_NOTIFICATION_URL": "https://other.example/hook"}
    assert Settings.from_env(env).sharepoint_notification_url == "https://other.example/hook"


def test_the_derived_url_replaces_only_the_last_segment_and_keeps_the_query() -> None:
    assert notification_url_for("http://127.0.0.1:7071/api/notifications") == "http://127.0.0.1:7071/api/sharepoint"
    assert (
        notification_url_for("https://a.example/x/y/hook?code=1&b=2") == "https://a.example/x/y/sharepoint?code=1&b=2"
    )


def test_plain_http_site_is_refused_unless_loopback() -> None:
    with pytest.raises(InvalidSettingError, match=r"entry 0.*https"):
        parse_sharepoint(json.dumps([{"site": "http://contoso.sharepoint.com/sites/x", "list": LIST}]))
    [local] = parse_sharepoint(json.dumps([{"site": "http://127.0.0.1:8080/sites/x", "list": LIST}]))
    assert local.origin == "http://127.0.0.1:8080"


def test_a_list_that_is_not_a_guid_is_named() -> None:
    with pytest.raises(InvalidSettingError, match="entry 1: list 'Documents'"):
        parse_sharepoint(json.dumps([{"site": SITE, "list": LIST}, {"site": SITE, "list": "Documents"}]))


def test_an_entry_without_site_is_named() -> None:
    with pytest.raises(InvalidSettingError, match=r"SHAREPOINT_SUBSCRIPTIONS.*entry 0 has no site"):
        parse_sharepoint(json.dumps([{"list": LIST}]))


def test_a_sharepoint_list_url_is_refused_in_graph_subscriptions() -> None:
    env = {**BASE_ENV, "GRAPH_SUBSCRIPTIONS": json.dumps([{"resource": SharePointList(SITE, LIST).resource}])}
    with pytest.raises(InvalidSettingError, match="not a Graph resource"):
        Settings.from_env(env)


def test_the_resource_names_the_list_and_its_token_scope() -> None:
    target = list_of(f"{SITE}/_api/web/lists('{LIST}')")
    assert target == SharePointList(SITE, LIST)
    assert target.origin == "https://contoso.sharepoint.com"
    assert list_of("drives/b!x/root") is None


def test_subscriptions_live_180_days_and_renew_at_half() -> None:
    from datetime import UTC, datetime, timedelta

    resource = SharePointList(SITE, LIST).resource
    assert max_lifetime(resource) == timedelta(days=180)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not renewal_due(resource, now + timedelta(days=91), now)
    assert renewal_due(resource, now + timedelta(days=89), now)


def test_the_expired_token_error_is_recognised_by_its_code() -> None:
    assert expired_token(payload("sharepoint-expired-token.json"))
    verbose = {"error": {"code": "-2130575172, Microsoft.SharePoint.SPException", "message": {"value": "x"}}}
    assert expired_token(verbose)
    other = {"odata.error": {"code": "-2147024809, System.ArgumentException", "message": {"value": "x"}}}
    assert not expired_token(other)
    assert not expired_token(None)


def test_change_records_are_parsed_and_the_last_one_per_item_wins() -> None:
    records = parse_changes(payload("sharepoint-getchanges.json"))
    assert [(r.item_id, r.change_type) for r in records] == [(7, 1), (7, 2), (8, 3)]
    assert records[0].unique_id == "5a1f6e43-0d51-4e7b-9f5c-6a3f0b1b2c01"
    latest = latest_per_item(records)
    assert [(r.item_id, r.change_type, r.removed) for r in latest] == [(7, 2, False), (8, 3, True)]


class FakeList:
    """An in-memory list behind the SharePointClient methods the source calls."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.log: list[ChangeRecord] = []
        self.number = 0
        self.expired_before = 0
        self.item_reads: list[int] = []

    def token(self) -> str:
        return f"1;3;{LIST};0;{self.number}"

    def add(self, item_id: int, title: str) -> None:
        self.rows[item_id] = {"Id": item_id, "UniqueId": f"U-{item_id}", "Title": title, "owshiddenversion": 1}
        self._record(item_id, 1)

    def update(self, item_id: int, title: str) -> None:
        item = self.rows[item_id]
        item.update(Title=title, owshiddenversion=item["owshiddenversion"] + 1)
        self._record(item_id, 2)

    def delete(self, item_id: int) -> None:
        del self.rows[item_id]
        self._record(item_id, 3)

    def _record(self, item_id: int, change: int) -> None:
        self.number += 1
        self.log.append(ChangeRecord(item_id, f"u-{item_id}", change, self.token()))

    async def current_token(self, target: SharePointList) -> str:
        return self.token()

    async def changes(self, target: SharePointList, token: str, limit: int) -> list[ChangeRecord]:
        start = int(token.rsplit(";", 1)[1])
        if start < self.expired_before:
            raise ResyncRequiredError("expired", None)
        return [r for r in self.log if int(r.token.rsplit(";", 1)[1]) > start][:limit]

    async def items(self, target: SharePointList, url: str | None, top: int) -> Any:
        skip = int(url or 0)
        ids = sorted(self.rows)[skip : skip + top]
        body: dict[str, Any] = {"value": [dict(self.rows[i]) for i in ids]}
        if skip + top < len(self.rows):
            body["odata.nextLink"] = str(skip + top)
        return body

    async def item(self, target: SharePointList, item_id: int) -> dict[str, Any] | None:
        self.item_reads.append(item_id)
        return dict(self.rows[item_id]) if item_id in self.rows else None

    async def web_id(self, site: str) -> str:
        return "web-1"


RESOURCE = SharePointList(SITE, LIST).resource


async def test_an_enumeration_pages_items_and_ends_at_the_token_read_before_it() -> None:
    fake = FakeList()
    for n in range(1, 4):
        fake.add(n, f"t{n}")
    source = SharePointListSource(fake, page_size=2)  # type: ignore[arg-type]
    first = await source.page(RESOURCE, None)
    assert [c.item_id for c in first.changes] == ["u-1", "u-2"] and first.next_link and not first.delta_link
    fake.add(4, "during")  # a change during the enumeration is read after it
    second = await source.page(RESOURCE, first.next_link)
    assert second.delta_link == f"changes|1;3;{LIST};0;3"
    after = await source.page(RESOURCE, second.delta_link)
    assert [c.item_id for c in after.changes] == ["u-4"]
    item = after.changes[0].item
    assert item is not None and (item["siteUrl"], item["webId"], item["listId"]) == (SITE, "web-1", LIST)
    assert after.container_id == LIST


async def test_changes_page_with_the_fetch_limit_and_read_each_item_once() -> None:
    fake = FakeList()
    start = f"changes|{fake.token()}"
    fake.add(1, "a")
    fake.update(1, "b")
    fake.update(1, "c")
    fake.add(2, "x")
    fake.delete(2)
    source = SharePointListSource(fake, fetch_limit=3)  # type: ignore[arg-type]
    first = await source.page(RESOURCE, start)
    assert first.next_link == f"changes|1;3;{LIST};0;3" and first.delta_link is None
    assert [(c.item_id, c.version) for c in first.changes] == [("u-1", "3")]
    assert fake.item_reads == [1]
    second = await source.page(RESOURCE, first.next_link)
    assert second.delta_link == f"changes|1;3;{LIST};0;5"
    assert [(c.item_id, c.version, c.item) for c in second.changes] == [("u-2", None, None)]


async def test_an_expired_token_asks_for_a_resync_from_scratch() -> None:
    fake = FakeList()
    fake.add(1, "a")
    fake.expired_before = 1
    source = SharePointListSource(fake)  # type: ignore[arg-type]
    with pytest.raises(ResyncRequiredError) as raised:
        await source.page(RESOURCE, f"changes|1;3;{LIST};0;0")
    assert raised.value.location is None
    again = await source.page(RESOURCE, raised.value.location)
    assert [c.item_id for c in again.changes] == ["u-1"]
