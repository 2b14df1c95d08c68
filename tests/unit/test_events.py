"""Change events: stable ids, created/updated/deleted classification page by page, and fitting a queue message."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from shared.model.changes import SourceChange
from shared.model.cursor import Mode
from shared.model.events import (
    CLOCK_SKEW,
    ChangeEvent,
    Context,
    change_type_of,
    classify_page,
    deletions,
    event_id,
    fit_event,
)
from shared.model.index import Known
from shared.model.notifications import MAX_MESSAGE_JSON_BYTES

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=1)
LONG_AGO = NOW - timedelta(days=400)
DRIVE_ID = "b!dGVzdC1kcml2ZS1vbmU"
RESOURCE = f"drives/{DRIVE_ID}/root"
SUBSCRIPTION = "aa269f87-2a92-4cff-a43e-2771878c3727"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json"
PASS = "pass-1"


def context(mode=Mode.DELTA, since=None):
    return Context(
        mode=mode,
        kind="driveItem",
        container_id=DRIVE_ID,
        subscription_id=SUBSCRIPTION,
        resource=RESOURCE,
        observed_at=NOW,
        pass_id=PASS,
        since=since,
    )


def known(**versions):
    return {item_id: Known(version) for item_id, version in versions.items()}


def run(changes, index, mode=Mode.DELTA, since=None):
    return classify_page(changes, index, context(mode, since))


def live(item_id, etag, created=None, modified=None, **fields):
    item = {"id": item_id, "eTag": etag, **fields}
    return SourceChange(item_id, etag, item, created_at=created, modified_at=modified)


def gone(item_id):
    return SourceChange(item_id, None, None)


def summary(result):
    return [(e.change_type, e.item_id) for e in result.events]


def rows(result):
    return {(w.item_id, w.version, w.deleted, w.pass_id) for w in result.writes}


# --- stable ids -----------------------------------------------------------------------------


def test_the_same_item_at_the_same_etag_gets_the_same_id():
    first = run([live("item-1", '"{A},2"')], {})
    again = run([live("item-1", '"{A},2"')], {})

    assert first.events[0].id == again.events[0].id


def test_a_new_etag_of_the_same_item_gets_a_new_id():
    before = run([live("item-1", '"{A},2"')], known(**{"item-1": '"{A},1"'}))
    after = run([live("item-1", '"{A},3"')], known(**{"item-1": '"{A},2"'}))

    assert before.events[0].id != after.events[0].id


def test_a_deletion_found_by_an_enumeration_has_the_same_id_as_one_reported_by_delta():
    from_delta = run([gone("item-1")], known(**{"item-1": '"{A},1"'}))
    from_resync, _ = deletions([("item-1", Known('"{A},1"'))], context(Mode.RESYNC))

    assert from_delta.events[0].id == from_resync.events[0].id


def test_a_deletion_and_a_change_of_the_same_version_get_different_ids():
    assert event_id("driveItem", DRIVE_ID, "item-1", "deleted", "v1") != event_id(
        "driveItem", DRIVE_ID, "item-1", "updated", "v1"
    )


@pytest.mark.parametrize(
    "other",
    [
        ("driveItem", "b!another-drive", "item-1", "updated", "v1"),
        ("driveItem", DRIVE_ID, "item-2", "updated", "v1"),
        ("listItem", DRIVE_ID, "item-1", "updated", "v1"),
    ],
    ids=["other-container", "other-item", "other-kind"],
)
def test_ids_differ_across_items_containers_and_kinds(other):
    assert event_id("driveItem", DRIVE_ID, "item-1", "updated", "v1") != event_id(*other)


def test_ids_do_not_collide_when_parts_shift_between_fields():
    assert event_id("driveItem", "ab", "c", "updated", "v") != event_id("driveItem", "a", "bc", "updated", "v")


def test_an_id_is_forty_lowercase_hex_digits():
    identifier = event_id("driveItem", DRIVE_ID, "item-1", "created", '"{A},1"')

    assert len(identifier) == 40
    assert set(identifier) <= set("0123456789abcdef")


# --- repeated runs: the same change keeps its id and its change type -----------------------


def test_a_page_read_again_before_its_index_rows_were_written_repeats_the_same_events():
    # A run that crashed after sending events but before writing the index is retried.
    changes = [live("item-1", "v1"), live("item-2", "v5"), gone("item-3")]
    index = known(**{"item-2": "v4", "item-3": "v1"})

    first, again = run(changes, index), run(changes, index)

    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in again.events]


def test_a_page_read_again_after_its_index_rows_were_written_yields_nothing_not_updated():
    # Today's bug: the repeat reported as updated what the first run reported as created.
    first = run([live("item-1", "v1")], {})
    index = {w.item_id: Known(w.version, w.deleted) for w in first.writes}

    again = run([live("item-1", "v1")], index)

    assert summary(first) == [("created", "item-1")]
    assert again.events == []


def test_a_deletion_read_again_after_its_tombstone_was_written_yields_nothing():
    first = run([gone("item-1")], known(**{"item-1": "v1"}))
    index = {w.item_id: Known(w.version, w.deleted) for w in first.writes}

    again = run([gone("item-1")], index)

    assert summary(first) == [("deleted", "item-1")]
    assert again.events == []


def test_delete_restore_delete_gives_two_deletions_with_different_ids():
    index = known(**{"item-1": "v1"})
    first_delete = run([gone("item-1")], index)
    index = {w.item_id: Known(w.version, w.deleted) for w in first_delete.writes}
    restore = run([live("item-1", "v2")], index)
    index = {w.item_id: Known(w.version, w.deleted) for w in restore.writes}
    second_delete = run([gone("item-1")], index)

    assert summary(restore) == [("created", "item-1")]
    assert summary(second_delete) == [("deleted", "item-1")]
    assert first_delete.events[0].id != second_delete.events[0].id


def test_an_item_restored_at_the_same_version_lives_again_under_new_ids():
    # A directory object's version hashes its properties: restored unchanged, it comes back at v1.
    created = run([live("item-1", "v1")], {})
    index = {w.item_id: Known(w.version, w.deleted, w.life) for w in created.writes}
    first_delete = run([gone("item-1")], index)
    index = {w.item_id: Known(w.version, w.deleted, w.life) for w in first_delete.writes}
    restore = run([live("item-1", "v1")], index)
    index = {w.item_id: Known(w.version, w.deleted, w.life) for w in restore.writes}
    again = run([live("item-1", "v1")], index)
    second_delete = run([gone("item-1")], index)

    assert summary(restore) == [("created", "item-1")] and again.events == []
    assert restore.events[0].id != created.events[0].id
    assert second_delete.events[0].id != first_delete.events[0].id


# --- the created / updated decision -------------------------------------------------------


def test_a_live_item_never_seen_is_created():
    result = run([live("item-1", "v1")], {})

    assert summary(result) == [("created", "item-1")]
    assert rows(result) == {("item-1", "v1", False, "")}


def test_a_known_item_with_a_new_version_is_updated():
    result = run([live("item-1", "v2")], known(**{"item-1": "v1"}))

    assert summary(result) == [("updated", "item-1")]


def test_a_known_item_at_the_same_version_is_no_news():
    # OneDrive reports the parent folders of a changed item: unchanged folders are not events.
    result = run([live("folder", "v1")], known(folder="v1"))

    assert result.events == []
    assert result.writes == []


def test_a_file_moved_in_with_its_original_created_date_is_created():
    moved_in = live("item-1", "v1", created=LONG_AGO, modified=LONG_AGO)

    assert summary(run([moved_in], {}, Mode.DELTA, since=SINCE)) == [("created", "item-1")]


def test_a_deleted_known_item_is_deleted_and_tombstoned():
    result = run([gone("item-1")], known(**{"item-1": "v1"}))

    assert summary(result) == [("deleted", "item-1")]
    assert result.events[0].item is None
    assert rows(result) == {("item-1", "v1", True, "")}


def test_a_deletion_of_an_item_the_index_never_saw_is_still_reported():
    assert summary(run([gone("item-1")], {})) == [("deleted", "item-1")]


def test_the_last_sighting_of_an_item_in_a_page_wins():
    result = run([live("item-1", "v1"), live("item-1", "v2")], {})

    assert [(e.change_type, e.item["eTag"]) for e in result.events] == [("created", "v2")]


@pytest.mark.parametrize(
    ("created", "modified", "expected"),
    [
        (NOW, NOW, "created"),
        (LONG_AGO, NOW, "updated"),
        (LONG_AGO, LONG_AGO, None),
        (SINCE - CLOCK_SKEW / 2, SINCE - CLOCK_SKEW / 2, "created"),
        (SINCE - CLOCK_SKEW * 2, SINCE - CLOCK_SKEW / 2, "updated"),
        (None, None, "created"),
    ],
    ids=["new", "old-but-changed", "unchanged", "within-skew", "changed-within-skew", "no-dates"],
)
@pytest.mark.parametrize("mode", [Mode.BASELINE, Mode.RESYNC])
def test_the_since_path_reports_only_what_changed_after_since(mode, created, modified, expected):
    change = live("item-1", "v1", created=created, modified=modified)

    assert change_type_of(change, None, mode, SINCE) == expected


def test_a_full_initial_sync_reports_every_item_as_created():
    old = live("item-1", "v1", created=LONG_AGO, modified=LONG_AGO)

    assert summary(run([old], {}, Mode.FULL, since=SINCE)) == [("created", "item-1")]


def test_events_carry_the_item_and_where_it_came_from():
    [event] = run([live("item-1", "v1", name="a.txt")], {}).events

    assert event.item == {"id": "item-1", "eTag": "v1", "name": "a.txt"}
    assert (event.subscription_id, event.resource, event.kind) == (SUBSCRIPTION, RESOURCE, "driveItem")
    assert (event.container_id, event.observed_at, event.resync) == (DRIVE_ID, NOW, False)


def test_a_sample_delta_page_is_classified_in_page_order(payload, delta_changes):
    page = payload("drive-delta-page.json")
    changes = delta_changes(page)
    index = known(**{"0123456789abc": '"{F0F0},1"', "123010204abac": '"{3B4E5A1C-7D2F-4E8B-9C6A-1F0E2D3C4B5A},1"'})

    result = run(changes, index)

    assert summary(result) == [
        ("deleted", "0123456789abc"),
        ("updated", "123010204abac"),
        ("created", "01NEWFILE00000000000000000000000"),
    ]
    assert result.events[2].item == page["value"][2]


# --- enumerations (first sync, baseline, 410 resync) -----------------------------------------


def test_an_enumeration_marks_every_listed_item_with_its_pass_even_unchanged_ones():
    result = run([live("item-1", "v1"), live("item-2", "v2")], known(**{"item-1": "v1"}), Mode.RESYNC, SINCE)

    assert summary(result) == [("created", "item-2")]
    assert rows(result) == {("item-1", "v1", False, PASS), ("item-2", "v2", False, PASS)}


def test_a_resync_does_not_report_unchanged_items_the_index_never_saw():
    # Today's flood: every pre-existing item unknown to the index was reported as updated.
    untouched = [live(f"item-{n}", "v1", created=LONG_AGO, modified=LONG_AGO) for n in range(100)]

    result = run(untouched, {}, Mode.RESYNC, since=SINCE)

    assert result.events == []
    assert len(result.writes) == 100  # indexed, so a later deletion of any of them is known


def test_a_baseline_reports_nothing_for_items_that_existed_before_it():
    result = run([live("item-1", "v1", created=LONG_AGO, modified=LONG_AGO)], {}, Mode.BASELINE, since=SINCE)

    assert result.events == []
    assert rows(result) == {("item-1", "v1", False, PASS)}


def test_known_items_an_enumeration_did_not_mark_are_deleted():
    result, purge = deletions([("item-1", Known("v1")), ("item-2", Known("v3"))], context(Mode.RESYNC))

    assert summary(result) == [("deleted", "item-1"), ("deleted", "item-2")]
    assert rows(result) == {("item-1", "v1", True, PASS), ("item-2", "v3", True, PASS)}
    assert purge == []


def test_old_tombstones_an_enumeration_did_not_mark_are_purged_silently():
    result, purge = deletions([("item-1", Known("v1", deleted=True))], context(Mode.RESYNC))

    assert result.events == []
    assert purge == ["item-1"]


def test_enumeration_events_are_marked_as_resync():
    [event] = run([live("item-1", "v2")], known(**{"item-1": "v1"}), Mode.RESYNC, SINCE).events

    assert event.resync is True


def test_an_incremental_delta_never_infers_deletions_from_absence():
    result = run([live("item-1", "v2")], known(**{"item-1": "v1", "item-2": "v1"}))

    assert summary(result) == [("updated", "item-1")]


# --- fitting a queue message ----------------------------------------------------------------


def make_event(item, change_type="updated"):
    return ChangeEvent(
        id=event_id("driveItem", DRIVE_ID, "item-1", change_type, "v1"),
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
    event = make_event({"id": "item-1", "description": "é" * MAX_MESSAGE_JSON_BYTES})

    text = fit_event(event)

    assert len(text.encode("utf-8")) <= MAX_MESSAGE_JSON_BYTES
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
    result = run(delta_changes(payload("drive-delta-page.json")), known(**{"123010204abac": "old"}), Mode.RESYNC)
    large = make_event({"id": "item-1", "description": "x" * MAX_MESSAGE_JSON_BYTES})

    documents = [json.loads(fit_event(e)) for e in [*result.events, large]]

    for document in documents:
        jsonschema.validate(document, schema)


def test_an_event_names_its_tenant_and_its_id_does_not_depend_on_it():
    with_tenant = classify_page([live("item-1", "e1")], {}, replace(context(), tenant_id="tenant-1"))
    without = run([live("item-1", "e1")], {})
    [event] = with_tenant.events
    body = json.loads(event.to_json())
    assert body["tenantId"] == "tenant-1"
    jsonschema.validate(body, json.loads(SCHEMA.read_text()))
    assert event.id == without.events[0].id
