"""The SharePoint list source: listItem delta pages as changes, and list entries in the settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.config.subscriptions import parse_desired
from shared.errors import GraphRequestError, InvalidSettingError
from shared.sources.list_items import FIRST_PAGE_QUERY, ListSource, to_page

SITE = "contoso.sharepoint.com,2C712604-1370-44E7-A1F5-426573FDA80A,2D2244C3-251A-49EA-93A8-39E1C3A060FE"
LIST = "22e03ef3-6ef4-424d-a1d3-92a337807c30"
RESOURCE = f"sites/{SITE}/lists/{LIST}"


class FakeGraph:
    def __init__(self, body):
        self.body, self.calls = body, []

    async def fetch_url(self, url):
        self.calls.append(("url", url))
        return self.body

    async def fetch_path(self, path, query=None):
        self.calls.append(("path", path, query))
        return self.body


def test_a_page_gives_items_with_fields_and_deletions(payload):
    page = to_page(LIST, payload("list-delta-page.json"))
    live, deleted = page.changes
    assert (page.container_id, page.next_link) == (LIST, None)
    assert page.delta_link.endswith("token=1230919asd190410jlka")
    assert live.item_id == "1" and live.item["fields"]["Title"] == "Buy milk"
    assert live.version == '"{12AD05BB-59B8-43AA-9456-77C44E9BC066},3"'
    assert live.modified_at == datetime(2026, 1, 15, 11, 58, 30, tzinfo=UTC)
    assert (deleted.item_id, deleted.version, deleted.item) == ("3", None, None)


def test_a_page_without_links_is_refused():
    with pytest.raises(GraphRequestError):
        to_page(LIST, {"value": []})


async def test_the_first_page_asks_for_fields_and_later_pages_follow_the_link(payload):
    graph = FakeGraph(payload("list-delta-page.json"))
    source = ListSource(graph)
    assert source.kind == "listItem" and source.handles(RESOURCE) and not source.handles(f"drives/{LIST}/root")
    await source.page(RESOURCE, None)
    await source.page(RESOURCE, "https://graph.microsoft.com/v1.0/next")
    assert graph.calls == [
        ("path", f"sites/{SITE}/lists/{LIST}/items/delta", FIRST_PAGE_QUERY),
        ("url", "https://graph.microsoft.com/v1.0/next"),
    ]
    assert FIRST_PAGE_QUERY == {"$expand": "fields"}


def test_a_list_entry_is_accepted_with_updated():
    [entry] = parse_desired(f'[{{"resource": "{RESOURCE}", "changeType": "updated"}}]')
    assert entry.resource == RESOURCE


def test_a_list_entry_with_a_change_type_graph_refuses_is_rejected_and_named():
    with pytest.raises(InvalidSettingError, match=r"entry 0 .*changeType 'created' is refused for a SharePoint list"):
        parse_desired(f'[{{"resource": "{RESOURCE}", "changeType": "created"}}]')


def test_a_list_item_resource_no_source_reads_is_rejected_and_named():
    with pytest.raises(InvalidSettingError, match=r"entry 0 .*items/1.*no change source reads it"):
        parse_desired(f'[{{"resource": "{RESOURCE}/items/1", "changeType": "updated"}}]')


def test_a_list_subscription_lives_up_to_42300_minutes():
    from datetime import timedelta

    from shared.model.lifetimes import max_lifetime

    assert max_lifetime(RESOURCE) == timedelta(minutes=42300)
