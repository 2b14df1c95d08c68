"""Change events: stable ids, created/updated/deleted classification, and fitting a queue message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from shared.events import MAX_EVENT_BYTES, ChangeEvent, classify, event_id, fit_event
from shared.sources import SourceChange

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
DRIVE_ID = "b!dGVzdC1kcml2ZS1vbmU"
RESOURCE = f"drives/{DRIVE_ID}/root"
SUBSCRIPTION = "aa269f87-2a92-4cff-a43e-2771878c3727"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json"


def run(changes, known, complete=False):
    return classify(
        changes,
        known,
        complete=complete,
        kind="driveItem",
        container_id=DRIVE_ID,
        subscription_id=SUBSCRIPTION,
        resource=RESOURCE,
        observed_at=NOW,
    )


def live(item_id, etag, **fields):
    return SourceChange(item_id, etag, {"id": item_id, "eTag": etag, **fields})


def gone(item_id):
    return SourceChange(item_id, None, None)


def summary(result):
    return [(e.change_type, e.item_id) for e in result.events]


# --- stable ids -----------------------------------------------------------------------------


def test_the_same_item_at_the_same_etag_gets_the_same_id():
    first = run([live("item-1", '"{A},2"')], {})
    again = run([live("item-1", '"{A},2"')], {})

    assert first.events[0].id == again.events[0].id


def test_a_new_etag_of_the_same_item_gets_a_new_id():
    before = run([live("item-1", '"{A},2"')], {"item-1": '"{A},1"'})
    after = run([live("item-1", '"{A},3"')], {"item-1": '"{A},2"'})

    assert before.events[0].id != after.events[0].id


def test_a_deletion_id_does_not_depend_on_the_last_known_etag():
    one = run([gone("item-1")], {"item-1": '"{A},1"'})
    other = run([gone("item-1")], {"item-1": '"{A},7"'})
    unknown = run([gone("item-1")], {})

    assert one.events[0].id == other.events[0].id == unknown.events[0].id


def test_a_deletion_found_by_resync_has_the_same_id_as_one_reported_by_delta():
    from_delta = run([gone("item-1")], {"item-1": '"{A},1"'})
    from_resync = run([], {"item-1": '"{A},1"'}, complete=True)

    assert from_delta.events[0].id == from_resync.events[0].id


def test_a_deletion_and_a_change_of_the_same_item_get_different_ids():
    assert event_id("driveItem", DRIVE_ID, "item-1", None) != event_id("driveItem", DRIVE_ID, "item-1", "")


@pytest.mark.parametrize(
    "other",
    [
        ("driveItem", "b!another-drive", "item-1", "v1"),
        ("driveItem", DRIVE_ID, "item-2", "v1"),
        ("listItem", DRIVE_ID, "item-1", "v1"),
    ],
    ids=["other-container", "other-item", "other-kind"],
)
def test_ids_differ_across_items_containers_and_kinds(other):
    assert event_id("driveItem", DRIVE_ID, "item-1", "v1") != event_id(*other)


def test_ids_do_not_collide_when_parts_shift_between_fields():
    assert event_id("driveItem", "ab", "c", "v") != event_id("driveItem", "a", "bc", "v")


def test_an_id_is_forty_lowercase_hex_digits():
    identifier = event_id("driveItem", DRIVE_ID, "item-1", '"{A},1"')

    assert len(identifier) == 40
    assert set(identifier) <= set("0123456789abcdef")


# --- classify -------------------------------------------------------------------------------


def test_a_live_item_never_seen_is_created():
    result = run([live("item-1", "v1")], {})

    assert summary(result) == [("created", "item-1")]
    assert result.upserts == {"item-1": "v1"}
    assert result.deletes == []


def test_a_known_item_with_a_new_version_is_updated():
    result = run([live("item-1", "v2")], {"item-1": "v1"})

    assert summary(result) == [("updated", "item-1")]
    assert result.upserts == {"item-1": "v2"}


def test_a_deleted_known_item_is_deleted_and_forgotten():
    result = run([gone("item-1")], {"item-1": "v1"})

    assert summary(result) == [("deleted", "item-1")]
    assert result.events[0].item is None
    assert result.deletes == ["item-1"]
    assert result.upserts == {}


def test_a_deletion_of_an_item_the_index_never_saw_is_still_reported():
    result = run([gone("item-1")], {})

    assert summary(result) == [("deleted", "item-1")]
    assert result.deletes == []


def test_events_carry_the_item_and_where_it_came_from():
    item = {"id": "item-1", "eTag": "v1", "name": "file.txt"}

    event = run([SourceChange("item-1", "v1", item)], {}).events[0]

    assert event.item == item
    assert (event.subscription_id, event.resource, event.kind) == (SUBSCRIPTION, RESOURCE, "driveItem")
    assert (event.container_id, event.observed_at, event.resync) == (DRIVE_ID, NOW, False)


def test_a_repeated_incremental_run_repeats_the_same_events():
    # A run that crashed before saving the index is retried: consumers drop duplicates by id.
    changes = [live("item-1", "v1"), live("item-2", "v5"), gone("item-3")]
    known = {"item-2": "v4", "item-3": "v1"}

    first, again = run(changes, known), run(changes, known)

    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in again.events]


def test_a_sample_delta_page_is_classified_in_page_order(payload, delta_changes):
    page = payload("drive-delta-page.json")
    changes = delta_changes(page)
    known = {"0123456789abc": '"{F0F0},1"', "123010204abac": '"{3B4E5A1C-7D2F-4E8B-9C6A-1F0E2D3C4B5A},1"'}

    result = run(changes, known)

    assert summary(result) == [
        ("deleted", "0123456789abc"),
        ("updated", "123010204abac"),
        ("created", "01NEWFILE00000000000000000000000"),
    ]
    assert result.events[2].item == page["value"][2]
    assert result.deletes == ["0123456789abc"]
    assert set(result.upserts) == {"123010204abac", "01NEWFILE00000000000000000000000"}


# --- complete enumeration (first sync or 410 resync) ----------------------------------------


def test_complete_enumeration_reports_known_items_it_did_not_list_as_deleted():
    known = {"kept": "v1", "vanished-1": "v1", "vanished-2": "v3"}

    result = run([live("kept", "v2")], known, complete=True)

    assert sorted(summary(result)) == [("deleted", "vanished-1"), ("deleted", "vanished-2"), ("updated", "kept")]
    assert sorted(result.deletes) == ["vanished-1", "vanished-2"]


def test_complete_enumeration_skips_items_whose_version_did_not_change():
    result = run([live("same", "v1"), live("new", "v1")], {"same": "v1"}, complete=True)

    assert summary(result) == [("created", "new")]
    assert result.deletes == []


def test_complete_enumeration_reports_a_listed_deleted_item_once():
    result = run([gone("item-1")], {"item-1": "v1"}, complete=True)

    assert summary(result) == [("deleted", "item-1")]
    assert result.deletes == ["item-1"]


def test_complete_enumeration_marks_its_events_as_resync():
    result = run([live("new", "v1")], {"old": "v1"}, complete=True)

    assert result.events
    assert all(event.resync for event in result.events)


def test_an_incremental_delta_never_infers_deletions_from_absence():
    result = run([live("item-1", "v2")], {"item-1": "v1", "item-2": "v1"})

    assert summary(result) == [("updated", "item-1")]
    assert result.deletes == []


# --- fit_event ------------------------------------------------------------------------------


def make_event(item, change_type="updated"):
    return ChangeEvent(
        id=event_id("driveItem", DRIVE_ID, "item-1", "v1"),
        subscription_id=SUBSCRIPTION,
        resource=RESOURCE,
        kind="driveItem",
        change_type=change_type,
        item_id="item-1",
        container_id=DRIVE_ID,
        item=item,
        observed_at=NOW,
    )


def test_fit_event_keeps_an_event_that_fits_unchanged():
    event = make_event({"id": "item-1", "name": "file.txt"})

    assert fit_event(event) == event.to_json()
    assert "itemOmitted" not in json.loads(fit_event(event))


def test_fit_event_omits_an_item_too_large_for_a_queue_message():
    event = make_event({"id": "item-1", "description": "é" * MAX_EVENT_BYTES})

    text = fit_event(event)

    assert len(text.encode("utf-8")) <= MAX_EVENT_BYTES
    document = json.loads(text)
    assert document["item"] is None
    assert document["itemOmitted"] is True
    assert document == event.to_dict() | {"item": None, "itemOmitted": True}


def test_fit_event_measures_the_limit_in_utf8_bytes():
    # 600 characters, 1,800 bytes: fits a 1,000-character limit only if counted as characters.
    event = make_event({"id": "item-1", "name": "日" * 600})

    document = json.loads(fit_event(event, limit=1000))

    assert document["itemOmitted"] is True


def test_change_events_match_the_published_schema(payload, delta_changes):
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    result = run(delta_changes(payload("drive-delta-page.json")), {"123010204abac": "old"}, complete=True)
    large = make_event({"id": "item-1", "description": "x" * MAX_EVENT_BYTES})

    documents = [json.loads(fit_event(e)) for e in [*result.events, large]]

    for document in documents:
        jsonschema.validate(document, schema)
