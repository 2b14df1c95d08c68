"""The refusal ledger (pure, ``now`` passed in): counting, bucketing, what a flush writes, the windows health sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import refusals, telemetry
from shared.refusals import BUCKET, Ledger, Reason, Row, bucket_key, bucket_of, reason_of, summarize
from tests.unit.test_telemetry_api import counted, in_memory

NOW = datetime(2026, 11, 22, 10, 3, 20, tzinfo=UTC)


class Table:
    """What a flush hands over, and a switch to make the write fail as storage would."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, Reason], int] = {}
        self.writes = 0
        self.down = False

    async def write(self, rows: list[Row]) -> None:
        self.writes += 1
        if self.down:
            raise ConnectionError("storage unreachable")
        for row in rows:
            self.rows[(row.bucket, row.reason)] = row.count


def test_buckets_are_five_utc_minutes_keyed_in_time_order():
    assert bucket_of(NOW) == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert bucket_of(datetime(2026, 11, 22, 10, 5, tzinfo=UTC)) == datetime(2026, 11, 22, 10, 5, tzinfo=UTC)
    assert bucket_key(bucket_of(NOW)) == "202611221000"
    assert bucket_key(bucket_of(NOW + timedelta(days=40))) > bucket_key(bucket_of(NOW))


def test_counts_add_up_by_bucket_and_reason():
    ledger = Ledger("a")
    ledger.add(Reason.BAD_CLIENT_STATE, 2, NOW)
    ledger.add(Reason.BAD_CLIENT_STATE, 1, NOW + timedelta(minutes=1))
    ledger.add(Reason.UNKNOWN_SUBSCRIPTION, 4, NOW)
    ledger.add(Reason.BAD_CLIENT_STATE, 5, NOW + BUCKET)

    assert sorted(ledger.due(NOW + BUCKET), key=lambda r: (r.bucket, r.reason)) == [
        Row("202611221000", Reason.BAD_CLIENT_STATE, 3),
        Row("202611221000", Reason.UNKNOWN_SUBSCRIPTION, 4),
        Row("202611221005", Reason.BAD_CLIENT_STATE, 5),
    ]


async def test_a_flush_writes_totals_and_only_what_changed_since():
    ledger, table = Ledger("a"), Table()
    ledger.add(Reason.BAD_CLIENT_STATE, 2, NOW)
    assert await ledger.flush(table.write, NOW) == 1
    assert await ledger.flush(table.write, NOW) == 0  # nothing new: no write at all
    assert table.writes == 1

    ledger.add(Reason.BAD_CLIENT_STATE, 3, NOW)
    await ledger.flush(table.write, NOW)
    assert table.rows == {("202611221000", Reason.BAD_CLIENT_STATE): 5}  # the total, not the increment


async def test_a_failed_flush_keeps_the_counts_for_the_next_one():
    ledger, table = Ledger("a"), Table()
    ledger.add(Reason.DECRYPTION_FAILED, 2, NOW)
    table.down = True
    with pytest.raises(ConnectionError):
        await ledger.flush(table.write, NOW)
    ledger.add(Reason.DECRYPTION_FAILED, 1, NOW + BUCKET)
    table.down = False

    await ledger.flush(table.write, NOW + BUCKET)

    assert table.rows == {
        ("202611221000", Reason.DECRYPTION_FAILED): 2,
        ("202611221005", Reason.DECRYPTION_FAILED): 1,
    }


async def test_a_written_past_bucket_is_forgotten_and_the_current_one_kept():
    ledger, table = Ledger("a"), Table()
    ledger.add(Reason.MALFORMED, 1, NOW)
    await ledger.flush(table.write, NOW)
    assert len(ledger) == 1  # the bucket is current: more may come

    await ledger.flush(table.write, NOW + BUCKET)
    assert len(ledger) == 0


def test_memory_stays_bounded_however_long_storage_is_down():
    ledger = Ledger("a")
    for minute in range(0, 3 * 24 * 60, 5):  # three days of refusals of every kind, never flushed
        for reason in Reason:
            ledger.add(reason, 1, NOW + timedelta(minutes=minute))
    # At most a day of buckets (and the one in progress) per reason: older ones could no longer show in health.
    assert len(ledger) <= (timedelta(hours=24) // BUCKET + 1) * len(Reason)


def test_the_windows_sum_every_instance_by_reason():
    rows = [
        ("202611221000", "badClientState", 3),  # this bucket: both windows
        ("202611220905", "badClientState", 2),  # 58 minutes ago: both
        ("202611220855", "badClientState", 7),  # 68 minutes ago: the day only
        ("202611211005", "unknownSubscription", 1),  # 23 h 58 min ago: the day only
        ("202611210955", "unknownSubscription", 100),  # ended more than a day ago: neither
        ("202611221000", "someFutureReason", 9),  # another version's name: skipped
        ("not-a-bucket", "badClientState", 9),
    ]
    totals = summarize(rows, NOW)

    assert totals.last_hour == {Reason.BAD_CLIENT_STATE: 5}
    assert totals.last_day == {Reason.BAD_CLIENT_STATE: 12, Reason.UNKNOWN_SUBSCRIPTION: 1}
    body = totals.as_json()
    assert set(body) == {"lastHour", "last24Hours"}
    assert set(body["lastHour"]) == {reason.value for reason in Reason}  # zeros included: fields never come and go
    assert body["last24Hours"]["badClientState"] == 12 and body["last24Hours"]["decryptionFailed"] == 0


def test_check_items_reasons_map_to_one_name_each():
    assert reason_of("unknown subscription") is Reason.UNKNOWN_SUBSCRIPTION
    assert reason_of("clientState mismatch") is Reason.BAD_CLIENT_STATE
    assert reason_of("no subscriptionId") is Reason.NO_SUBSCRIPTION_ID
    assert reason_of("unknown lifecycleEvent") is Reason.UNKNOWN_LIFECYCLE_EVENT
    assert reason_of("no changeType") is Reason.NO_CHANGE_TYPE
    assert reason_of("text not valid Unicode") is Reason.MALFORMED


def test_count_goes_to_telemetry_and_to_the_process_ledger():
    _, reader = in_memory()
    before = counted(reader, telemetry.REJECTED, reason="decryptionFailed", source="processor")

    refusals.count(Reason.DECRYPTION_FAILED, 2, source="processor")
    refusals.count(Reason.DECRYPTION_FAILED, 0, source="processor")  # nothing: no row, no point

    assert counted(reader, telemetry.REJECTED, reason="decryptionFailed", source="processor") == before + 2
    [row] = refusals.ledger().due(datetime.now(UTC))
    assert (row.reason, row.count) == (Reason.DECRYPTION_FAILED, 2)


def test_the_reasons_the_resource_data_reader_needs_are_exported():
    # shared/security/resource_data.py counts its drops with these (its owner wires them).
    assert Reason.DECRYPTION_FAILED.value == "decryptionFailed"
    assert Reason.OUTSIDE_CALENDAR_WINDOW.value == "outsideCalendarWindow"
