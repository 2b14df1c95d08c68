"""The safety sweep's decision: which subscriptions get a delta run they were never notified about."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shared.model.resources import resource_key
from shared.model.subscription import CREATING
from shared.reconcile.sweeper import PER_MESSAGE, due_for_sweep, sweep_envelopes

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
AFTER = timedelta(seconds=900)
DRIVE = "drives/b!dGVzdC1kcml2ZS1vbmU/root"
OTHER = "drives/b!b3RoZXItZHJpdmU/root"


def test_a_subscription_whose_last_run_is_older_than_the_bound_is_due(make_record):
    record = make_record()

    due = due_for_sweep([record], {resource_key(DRIVE): NOW - AFTER - timedelta(seconds=1)}, NOW, AFTER)

    assert due == [record]


def test_a_subscription_with_a_recent_run_is_not_due(make_record):
    completed = {resource_key(DRIVE): NOW - AFTER + timedelta(seconds=1)}

    assert due_for_sweep([make_record()], completed, NOW, AFTER) == []


def test_a_subscription_that_never_completed_a_run_is_due(make_record):
    record = make_record()

    assert due_for_sweep([record], {resource_key(DRIVE): None}, NOW, AFTER) == [record]
    assert due_for_sweep([record], {}, NOW, AFTER) == [record]


def test_zero_means_every_subscription_on_every_tick(make_record):
    record = make_record()

    assert due_for_sweep([record], {resource_key(DRIVE): NOW}, NOW, timedelta(0)) == [record]


def test_a_record_without_a_graph_subscription_yet_is_not_swept(make_record):
    record = make_record(status=CREATING, subscription_id="")

    assert due_for_sweep([record], {}, NOW, AFTER) == []


def test_a_subscription_being_recreated_is_swept_under_its_old_id(make_record):
    record = make_record(status=CREATING)

    assert due_for_sweep([record], {}, NOW, AFTER) == [record]


def test_a_resource_watched_by_two_records_is_swept_once(make_record):
    first = make_record(subscription_id="a")
    second = make_record(subscription_id="b", key="other-key")

    assert due_for_sweep([first, second], {}, NOW, AFTER) == [first]


def test_each_resource_is_judged_by_its_own_cursor(make_record):
    fresh = make_record(subscription_id="a")
    stale = make_record(resource=OTHER, subscription_id="b")
    completed = {resource_key(DRIVE): NOW - timedelta(seconds=10), resource_key(OTHER): NOW - timedelta(hours=1)}

    assert due_for_sweep([fresh, stale], completed, NOW, AFTER) == [stale]


def test_sync_requests_name_each_due_subscription_like_a_renewal_does(make_record):
    due = [make_record(resource=f"drives/d{n}/root", subscription_id=f"id-{n}") for n in range(PER_MESSAGE + 3)]

    messages = [json.loads(m) for m in sweep_envelopes(due, NOW)]

    assert len(messages) == 2
    assert all(m["source"] == "sweep" and m["receivedAt"].startswith("2026-01-15T12:00:00") for m in messages)
    items = [item for m in messages for item in m["value"]]
    assert items == [
        {"subscriptionId": f"id-{n}", "changeType": "updated", "resource": f"drives/d{n}/root"}
        for n in range(PER_MESSAGE + 3)
    ]


def test_nothing_due_sends_nothing():
    assert sweep_envelopes([], NOW) == []
