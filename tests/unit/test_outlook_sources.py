"""Outlook sources: positions, the calendar window, delta items, the catalog, settings and lifetimes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.config.settings import Settings
from shared.errors import GraphRequestError, InvalidSettingError, ResyncRequiredError
from shared.model.catalog import readable_kind
from shared.model.changes import SourceChange
from shared.model.events import known_removals_only
from shared.model.index import Known
from shared.model.lifetimes import max_lifetime
from shared.sources.outlook import ContactSource, EventSource, FolderMessageSource, MailboxMessageSource
from shared.sources.outlook.folders import folder_row
from shared.sources.outlook.links import (
    Position,
    decode,
    encode,
    outlook_change,
    outside_window,
    window_around,
    window_stale,
)

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"
NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def payload(name: str) -> dict[str, Any]:
    return dict(json.loads((PAYLOADS / name).read_text()))


class FakeGraph:
    """Answers fetch_url with canned pages and records each request and its headers."""

    base_url = "https://graph.example/v1.0"

    def __init__(self, *pages: dict[str, Any]) -> None:
        self.pages = list(pages)
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def fetch_url(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        self.requests.append((url, dict(headers or {})))
        return self.pages.pop(0)


# ---- positions --------------------------------------------------------------------------------


def test_a_position_survives_being_stored_as_a_link():
    position = Position(link="https://graph/x?$skiptoken=a", folder="f1", full=True, window=("a", "b"), final=True)
    assert decode(encode(position)) == position
    assert decode(encode(Position())) == Position()


def test_a_plain_graph_link_is_read_as_a_position_with_that_link():
    assert decode("https://graph.microsoft.com/v1.0/users/x/contacts/delta") == Position(
        link="https://graph.microsoft.com/v1.0/users/x/contacts/delta"
    )


def test_a_damaged_position_is_an_error_not_a_fresh_start():
    with pytest.raises(GraphRequestError):
        decode('outlook:{"w": 5}')


def test_a_walk_position_stays_small_whatever_the_mailbox():
    link = "https://graph.microsoft.com/v1.0/users/x/mailFolders('A')/messages/delta?$skiptoken=" + "t" * 1500
    assert len(encode(Position(link=link, folder=folder_row("A" * 200), full=True))) < 2000


# ---- the calendar window ---------------------------------------------------------------------------


def test_the_window_is_whole_utc_days_from_days_past_to_days_ahead():
    assert window_around(NOW, 30, 365) == ("2026-10-23T00:00:00Z", "2027-11-23T00:00:00Z")


def test_the_window_is_kept_for_a_day_then_re_based():
    window = window_around(NOW, 30, 365)
    assert not window_stale(window, NOW + timedelta(hours=20), 30)
    assert not window_stale(window, NOW + timedelta(days=1), 30)
    assert window_stale(window, NOW + timedelta(days=2), 30)
    assert window_stale(None, NOW, 30)


# ---- delta items ---------------------------------------------------------------------------------


def test_removed_items_are_deletions_and_live_items_carry_their_change_key():
    removed, live = (outlook_change(item) for item in payload("outlook-message-delta.json")["value"])
    assert removed == SourceChange("AAMkADk0MGFkODE3LWE4MmYtNDRhOS0Dh_6qB-pB2Sa2pUum19a6YAAKnLuxoAAA=", None, None)
    assert live is not None and live.version == "CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAASsKZz"
    assert live.created_at == datetime(2026, 11, 20, 8, 15, 2, tzinfo=UTC)
    assert live.modified_at == datetime(2026, 11, 22, 9, 40, 11, 123456, tzinfo=UTC)
    assert live.item is not None and live.item["subject"] == "Holiday hours update"


def test_an_item_without_an_id_is_skipped():
    assert outlook_change({"subject": "no id"}) is None
    assert outlook_change("not an object") is None


def test_only_removals_of_items_reported_live_are_kept():
    changes = [
        SourceChange("never-seen", None, None),
        SourceChange("reported", None, None),
        SourceChange("already-deleted", None, None),
        SourceChange("new", "v1", {"id": "new"}),
    ]
    known = {"reported": Known("v3"), "already-deleted": Known("v2", deleted=True)}
    assert [c.item_id for c in known_removals_only(changes, known)] == ["reported", "new"]


# ---- sources ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "source"),
    [
        ("users/adele/mailFolders/inbox/messages", FolderMessageSource),
        ("users/adele/messages", MailboxMessageSource),
        ("users/adele/events", EventSource),
        ("users/adele/calendar/events", EventSource),
        ("users/adele/contacts", ContactSource),
        ("users/adele/contactFolders/AAMkC1/contacts", ContactSource),
    ],
)
def test_each_resource_form_has_exactly_one_outlook_source(resource, source):
    graph: Any = FakeGraph()
    sources = [FolderMessageSource(graph), MailboxMessageSource(graph, None), EventSource(graph), ContactSource(graph)]  # type: ignore[arg-type]
    assert [type(s) for s in sources if s.handles(resource)] == [source]


async def test_a_folder_delta_page_asks_for_immutable_ids_and_wraps_its_links():
    graph = FakeGraph(
        {"value": [], "@odata.nextLink": "https://graph/next"}, {"value": [], "@odata.deltaLink": "https://graph/d"}
    )
    source = FolderMessageSource(graph, page_size=50)  # type: ignore[arg-type]
    first = await source.page("users/adele/mailFolders/inbox/messages", None)
    assert graph.requests[0][0] == "https://graph.example/v1.0/users/adele/mailFolders/inbox/messages/delta"
    assert graph.requests[0][1]["Prefer"] == 'odata.maxpagesize=50, IdType="ImmutableId"'
    assert first.next_link is not None and decode(first.next_link).link == "https://graph/next"
    last = await source.page("users/adele/mailFolders/inbox/messages", first.next_link)
    assert graph.requests[1][0] == "https://graph/next"
    assert last.delta_link is not None and decode(last.delta_link) == Position(link="https://graph/d", final=True)
    assert first.container_id == "adele"


async def test_the_default_contacts_folder_is_read_by_contacts_delta():
    graph = FakeGraph({"value": [], "@odata.deltaLink": "https://graph/d"})
    await ContactSource(graph).page("users/adele/contacts", None)  # type: ignore[arg-type]
    assert graph.requests[0][0] == "https://graph.example/v1.0/users/adele/contacts/delta"


async def test_events_are_read_over_the_window_and_the_window_rides_in_the_links():
    graph = FakeGraph(payload("outlook-event-delta.json"))
    source = EventSource(graph, 30, 365, clock=lambda: NOW)  # type: ignore[arg-type]
    page = await source.page("users/adele/events", None)
    query = parse_qs(urlsplit(graph.requests[0][0]).query)
    assert urlsplit(graph.requests[0][0]).path == "/v1.0/users/adele/calendarView/delta"
    assert (query["startDateTime"], query["endDateTime"]) == (["2026-10-23T00:00:00Z"], ["2027-11-23T00:00:00Z"])
    assert [c.version is None for c in page.changes] == [False, True]
    assert page.next_link is not None
    assert decode(page.next_link).window == ("2026-10-23T00:00:00Z", "2027-11-23T00:00:00Z")


async def test_a_round_from_a_window_two_days_old_re_bases_with_a_resync():
    source = EventSource(FakeGraph(), 30, 365, clock=lambda: NOW + timedelta(days=2))  # type: ignore[arg-type]
    stored = encode(Position(link="https://graph/d", window=window_around(NOW, 30, 365), final=True))
    with pytest.raises(ResyncRequiredError) as raised:
        await source.page("users/adele/events", stored)
    assert raised.value.location is None


async def test_a_page_within_a_round_never_re_bases():
    graph = FakeGraph({"value": [], "@odata.deltaLink": "https://graph/d2"})
    source = EventSource(graph, 30, 365, clock=lambda: NOW + timedelta(days=2))  # type: ignore[arg-type]
    following = encode(Position(link="https://graph/next", window=window_around(NOW, 30, 365)))
    page = await source.page("users/adele/events", following)
    assert page.delta_link is not None and graph.requests[0][0] == "https://graph/next"


# ---- catalog, settings, lifetimes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "permission"),
    [
        ("users/adele/mailFolders/inbox/messages", "Mail.Read"),
        ("users/adele/messages", "Mail.Read"),
        ("users/adele/events", "Calendars.Read"),
        ("users/adele/contactFolders/AAMkC1/contacts", "Contacts.Read"),
    ],
)
def test_outlook_kinds_are_readable_with_resource_data_and_every_change_type(resource, permission):
    kind = readable_kind(resource)
    assert kind is not None and kind.permission == permission and kind.resource_data
    assert kind.change_types == {"created", "updated", "deleted"}


def test_an_outlook_entry_is_accepted_with_all_three_change_types(make_env):
    entry = {"resource": "users/adele/messages", "changeType": "created,updated,deleted"}
    settings = Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=json.dumps([entry])))
    assert [s.change_type for s in settings.subscriptions] == ["created,updated,deleted"]


def test_an_outlook_entry_refuses_a_change_type_graph_refuses(make_env):
    entry = {"resource": "users/adele/events", "changeType": "created,missed"}
    with pytest.raises(InvalidSettingError, match="'missed' is refused"):
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=json.dumps([entry])))


def test_the_calendar_window_defaults_to_30_days_back_and_365_ahead(make_env):
    settings = Settings.from_env(make_env())
    assert (settings.calendar_window_days_past, settings.calendar_window_days_ahead) == (30, 365)


def test_the_calendar_window_is_read_from_its_settings(make_env):
    settings = Settings.from_env(make_env(CALENDAR_WINDOW_DAYS_PAST="7", CALENDAR_WINDOW_DAYS_AHEAD="90"))
    assert (settings.calendar_window_days_past, settings.calendar_window_days_ahead) == (7, 90)


def test_a_calendar_window_that_is_not_a_number_is_named(make_env):
    with pytest.raises(InvalidSettingError, match="CALENDAR_WINDOW_DAYS_AHEAD"):
        Settings.from_env(make_env(CALENDAR_WINDOW_DAYS_AHEAD="a year"))


def test_a_negative_calendar_window_is_named(make_env):
    with pytest.raises(InvalidSettingError, match="CALENDAR_WINDOW_DAYS_PAST"):
        Settings.from_env(make_env(CALENDAR_WINDOW_DAYS_PAST="-1"))


@pytest.mark.parametrize(
    "resource",
    [
        "users/adele/mailFolders/inbox/messages",
        "users/adele/messages",
        "users/adele/events",
        "users/adele/calendar/events",
        "users/adele/contacts",
        "users/adele/contactFolders/AAMkC1/contacts",
    ],
)
def test_outlook_subscriptions_live_a_week_or_a_day_with_resource_data(resource):
    assert max_lifetime(resource) == timedelta(minutes=10080)
    assert max_lifetime(resource, include_resource_data=True) == timedelta(minutes=1440)


# ---- events outside the window (for resource data, which names the event's times) ---------------


def test_an_event_wholly_before_or_after_the_window_is_outside():
    window = window_around(NOW, 30, 365)
    later = {"start": {"dateTime": "2028-01-05T09:00:00.0000000", "timeZone": "UTC"}}
    later["end"] = {"dateTime": "2028-01-05T10:00:00.0000000", "timeZone": "UTC"}
    earlier = {"start": {"dateTime": "2026-09-01T09:00:00.0000000", "timeZone": "UTC"}}
    earlier["end"] = {"dateTime": "2026-09-01T10:00:00.0000000", "timeZone": "UTC"}
    assert outside_window(later, window) and outside_window(earlier, window)


def test_an_event_overlapping_the_window_edge_is_inside():
    window = window_around(NOW, 30, 365)
    event = {
        "start": {"dateTime": "2026-10-22T23:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-10-23T01:00:00.0000000", "timeZone": "UTC"},
    }
    assert not outside_window(event, window)


def test_an_event_in_a_named_time_zone_is_placed_in_utc():
    window = ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    # 20:00 to 21:00 on 31 October in New York is 00:00 to 01:00 UTC on 1 November: inside.
    event = {
        "start": {"dateTime": "2026-10-31T20:00:00.0000000", "timeZone": "America/New_York"},
        "end": {"dateTime": "2026-10-31T21:00:00.0000000", "timeZone": "America/New_York"},
    }
    assert not outside_window(event, window)
    assert outside_window(event, ("2026-11-01T02:00:00Z", "2026-11-02T00:00:00Z"))


def test_an_event_whose_times_cannot_be_placed_counts_as_inside():
    window = window_around(NOW, 30, 365)
    windows_zone = {
        "start": {"dateTime": "2030-01-01T09:00:00", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2030-01-01T10:00:00", "timeZone": "Pacific Standard Time"},
    }
    assert not outside_window(windows_zone, window)
    assert not outside_window({"subject": "no times"}, window)
