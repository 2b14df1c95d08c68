"""Coalescing: one delta run covers every notification received before it started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model.cursor import CursorState, Mode
from shared.sync.coalescing import COVERAGE_MARGIN, MAX_DEFER, Action, covers, decide

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LINK = "https://graph.microsoft.com/v1.0/drives/b!x/root/delta?token=abc"


def test_a_notification_stored_well_before_the_last_pass_started_is_skipped():
    state = CursorState(delta_link=LINK, synced_from=NOW - timedelta(seconds=5))

    decision = decide(state, notified_at=NOW - timedelta(seconds=8), now=NOW)

    assert decision.action is Action.SKIP


def test_a_notification_stored_exactly_the_margin_before_the_pass_started_is_skipped():
    started = NOW - timedelta(seconds=5)

    decision = decide(CursorState(delta_link=LINK, synced_from=started), started - COVERAGE_MARGIN, now=NOW)

    assert decision.action is Action.SKIP


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(milliseconds=1), timedelta(seconds=1), COVERAGE_MARGIN])
def test_a_pass_that_started_less_than_the_margin_after_a_notification_does_not_cover_it(skew):
    # The pass start and the notification come from two clocks (table and queue services, or
    # whole-second insertion times): within the margin, the pass may have started before the change.
    notified = NOW - timedelta(seconds=10)
    started = notified + COVERAGE_MARGIN - skew - timedelta(microseconds=1)

    assert not covers(started, notified)
    assert decide(CursorState(LINK, synced_from=started), notified, NOW).action is Action.RUN


def test_a_notification_whose_clock_runs_ahead_of_the_pass_start_is_not_skipped():
    # An instance 30 s ahead stamps a notification "later" than a pass that began before the change.
    started = NOW - timedelta(seconds=5)
    notified_by_fast_clock = started + timedelta(seconds=30)

    assert decide(CursorState(LINK, synced_from=started), notified_by_fast_clock, NOW).action is Action.RUN


def test_a_pass_in_progress_with_no_lease_is_resumed_even_for_a_covered_notification():
    state = CursorState(LINK, synced_from=NOW, mode=Mode.DELTA, next_link=LINK + "&page=2")

    assert decide(state, NOW - timedelta(hours=1), NOW).action is Action.RUN


def test_a_pass_in_progress_under_a_lease_defers_an_uncovered_notification():
    state = CursorState(LINK, mode=Mode.BASELINE, lease_until=NOW + timedelta(seconds=30))

    assert decide(state, NOW, NOW).action is Action.DEFER


def test_a_clock_behind_storage_waits_no_longer_than_the_interval():
    # The last pass started "in the future" for this instance's clock.
    state = CursorState(LINK, synced_from=NOW + timedelta(minutes=5))

    decision = decide(state, NOW + timedelta(minutes=6), NOW, min_interval=timedelta(seconds=1))

    assert decision.action is Action.DEFER
    assert decision.delay == timedelta(seconds=1)


def test_a_covered_notification_is_skipped_even_while_a_run_holds_the_lease():
    state = CursorState(LINK, synced_from=NOW - timedelta(seconds=5), lease_until=NOW + timedelta(minutes=5))
    assert covers(state.synced_from, NOW - timedelta(seconds=10))

    assert decide(state, NOW - timedelta(seconds=10), NOW).action is Action.SKIP


def test_a_notification_waits_while_another_run_holds_the_lease():
    state = CursorState(LINK, synced_from=NOW - timedelta(minutes=1), lease_until=NOW + timedelta(minutes=4))

    decision = decide(state, notified_at=NOW - timedelta(seconds=1), now=NOW)

    assert decision.action is Action.DEFER
    assert decision.delay == timedelta(seconds=1)


@pytest.mark.parametrize(("deferrals", "seconds"), [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16)])
def test_the_wait_for_a_held_lease_doubles_with_each_deferral(deferrals, seconds):
    state = CursorState(LINK, lease_until=NOW + timedelta(minutes=5))

    decision = decide(state, NOW, NOW, deferrals=deferrals)

    assert decision.action is Action.DEFER
    assert decision.delay == timedelta(seconds=seconds)


@pytest.mark.parametrize("deferrals", [5, 6, 10, 30, 47, 100])
def test_the_wait_for_a_held_lease_is_capped_at_thirty_seconds(deferrals):
    state = CursorState(LINK, lease_until=NOW + timedelta(minutes=5))

    decision = decide(state, NOW, NOW, deferrals=deferrals)

    assert decision.action is Action.DEFER
    assert decision.delay == MAX_DEFER == timedelta(seconds=30)


def test_the_wait_scales_with_the_minimum_interval():
    state = CursorState(LINK, lease_until=NOW + timedelta(minutes=5))

    decision = decide(state, NOW, NOW, deferrals=2, min_interval=timedelta(milliseconds=250))

    assert decision.delay == timedelta(seconds=1)


def test_an_expired_lease_does_not_hold_anyone_back():
    state = CursorState(LINK, synced_from=NOW - timedelta(minutes=10), lease_until=NOW - timedelta(minutes=5))

    assert decide(state, NOW - timedelta(seconds=1), NOW).action is Action.RUN


def test_a_lease_ending_right_now_has_expired():
    state = CursorState(LINK, synced_from=NOW - timedelta(minutes=10), lease_until=NOW)

    assert decide(state, NOW - timedelta(seconds=1), NOW).action is Action.RUN


def test_a_run_started_too_recently_defers_until_the_minimum_interval_has_passed():
    state = CursorState(LINK, synced_from=NOW - timedelta(milliseconds=300))

    decision = decide(state, notified_at=NOW - timedelta(milliseconds=100), now=NOW, min_interval=timedelta(seconds=1))

    assert decision.action is Action.DEFER
    assert decision.delay == timedelta(milliseconds=700)


def test_a_run_too_recent_defers_by_at_least_fifty_milliseconds():
    state = CursorState(LINK, synced_from=NOW - timedelta(milliseconds=999))

    decision = decide(state, notified_at=NOW, now=NOW, min_interval=timedelta(seconds=1))

    assert decision.action is Action.DEFER
    assert decision.delay == timedelta(milliseconds=50)


def test_a_notification_after_a_run_older_than_the_interval_runs():
    state = CursorState(LINK, synced_from=NOW - timedelta(seconds=1))

    decision = decide(state, notified_at=NOW - timedelta(milliseconds=10), now=NOW, min_interval=timedelta(seconds=1))

    assert decision.action is Action.RUN


def test_a_resource_never_synced_runs():
    assert decide(CursorState(), NOW, NOW).action is Action.RUN


def test_a_cursor_started_from_latest_but_never_run_runs():
    assert decide(CursorState(delta_link=LINK), NOW - timedelta(hours=1), NOW).action is Action.RUN


def test_a_notification_waits_the_longest_at_once_while_a_long_pass_holds_the_lease():
    # Short back-offs during a pass of many pages only re-enqueue the same notification over and over.
    state = CursorState(LINK, mode=Mode.DELTA, pages=40, lease_until=NOW + timedelta(seconds=30))

    decision = decide(state, NOW, NOW, deferrals=0)

    assert (decision.action, decision.delay) == (Action.DEFER, MAX_DEFER)


def test_a_pass_that_has_not_read_a_page_yet_keeps_the_short_back_off():
    state = CursorState(LINK, mode=Mode.DELTA, lease_until=NOW + timedelta(seconds=30))

    assert decide(state, NOW, NOW, deferrals=0).delay == timedelta(seconds=1)
