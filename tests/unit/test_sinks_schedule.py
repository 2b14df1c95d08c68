"""The sinks' retry schedule, played on a simulated clock: outages are waited out, the horizon is kept.

Svix's documented schedule (docs.svix.com/retries) spans about 27.5 hours; Standard Webhooks
(spec/standard-webhooks.md, "Deliverability and reliability") recommends exponential back-off
over days. The default horizon is 24 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from shared.model.schedule import MAX_DELAY, MAX_WAIT, WAIT_MARGIN, RetryPolicy

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEFAULT = RetryPolicy()


def tries(policy: RetryPolicy, up_at: datetime | None, retry_after: float | None = None) -> tuple[list[datetime], bool]:
    """The tries of one event whose receiver answers from ``up_at`` (None: never); and whether it was delivered."""
    now, retries, times = T0, 0, []
    while True:
        times.append(now)
        if up_at is not None and now >= up_at:
            return times, True
        delay = policy.retry_delay(retries, T0, now, retry_after)
        if delay is None:
            return times, False
        assert delay > 0
        now += timedelta(seconds=delay)
        retries += 1


@pytest.mark.parametrize(
    "outage",
    [timedelta(minutes=4), timedelta(minutes=40), timedelta(hours=3), timedelta(hours=12), timedelta(hours=23)],
)
def test_an_outage_within_the_horizon_is_waited_out(outage: timedelta) -> None:
    times, delivered = tries(DEFAULT, T0 + outage)
    assert delivered
    # Delivered within an hour of the receiver's return (the longest wait between tries).
    assert times[-1] - (T0 + outage) <= timedelta(seconds=MAX_DELAY)


def test_the_first_tries_come_quickly_then_double_up_to_an_hour() -> None:
    times, _ = tries(DEFAULT, None)
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert max(gaps) == MAX_DELAY


def test_the_default_horizon_is_a_day_and_the_last_try_is_at_the_horizon() -> None:
    times, delivered = tries(DEFAULT, None)
    assert not delivered
    assert times[-1] == T0 + timedelta(hours=24)  # a last try exactly at the horizon, then poison
    assert all(t < T0 + timedelta(hours=24) for t in times[:-1])
    assert 30 < len(times) < 40  # about 12 tries in the first hour, then hourly


def test_a_configured_horizon_is_honoured() -> None:
    policy = RetryPolicy(horizon=timedelta(hours=2))
    times, delivered = tries(policy, None)
    assert not delivered and times[-1] == T0 + timedelta(hours=2)
    _, delivered = tries(policy, T0 + timedelta(hours=1, minutes=59))
    assert delivered


def test_an_attempt_cap_still_applies_when_set() -> None:
    times, delivered = tries(RetryPolicy(max_attempts=3), None)
    assert not delivered and len(times) == 3


def test_retry_after_is_honoured_but_never_past_the_horizon() -> None:
    assert DEFAULT.retry_delay(0, T0, T0, retry_after=120.0) == 120.0
    late = T0 + timedelta(hours=23, minutes=59)
    assert DEFAULT.retry_delay(0, T0, late, retry_after=7200.0) == 60.0


def test_a_later_event_waits_as_long_as_the_earlier_one_is_retried() -> None:
    """The later event starts waiting before the earlier one's first failure (its POST timing out)."""
    first_failure = T0 + timedelta(seconds=45)
    earlier, _ = tries(DEFAULT, None)
    given_up = earlier[-1] + (first_failure - T0)  # the earlier event is poisoned here: the item is free
    now, waits, looks = T0, 0, []
    while now <= given_up:
        delay = DEFAULT.wait_delay(waits, T0, now, hint=1.0)
        assert delay is not None, f"gave up waiting at {now - T0}, before the earlier event at {given_up - T0}"
        now += timedelta(seconds=delay)
        waits += 1
        looks.append(now)
    # It looks again soon after the item is free, well before its own limit.
    assert looks[-1] - given_up <= timedelta(seconds=MAX_WAIT)
    assert looks[-1] < T0 + DEFAULT.horizon + WAIT_MARGIN


def test_waiting_doubles_from_the_hint_up_to_five_minutes_then_gives_up() -> None:
    assert [DEFAULT.wait_delay(n, T0, T0, hint=1.0) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert DEFAULT.wait_delay(30, T0, T0, hint=1.0) == MAX_WAIT
    assert DEFAULT.wait_delay(0, T0, T0 + DEFAULT.horizon + WAIT_MARGIN, hint=1.0) is None


def test_hundreds_of_retries_do_not_overflow() -> None:
    assert RetryPolicy(horizon=timedelta(days=7)).retry_delay(5000, T0, T0, None) == MAX_DELAY
