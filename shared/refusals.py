"""Refusals: every item the app refuses or cannot process, counted by reason.

``count`` is what the rest of the code calls. It adds to the telemetry counter
``graphhooks.notifications.rejected`` and to this process's ``Ledger``, in memory, with
nothing awaited (the HTTP path calls it). The ledger keeps a count per 5-minute bucket
and reason; a flusher (stores/refusals.py) writes them in the background to the
``refusals`` table, one row per bucket, instance and reason, and /api/health sums the
table's last hour and last 24 hours by reason. Azure runs many instances and any one
answers /api/health, so each instance's counts must reach the table, not stay in its memory.

Memory is bounded: the reasons are a fixed set, a bucket is forgotten once written and
past, and none is kept beyond the longest window health shows (telemetry has it already).
A graceful close flushes; a crash loses what was counted since the last successful flush.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared import telemetry
from shared.clock import utcnow


class Reason(StrEnum):
    """Why an item was refused or not processed: its one name, in telemetry (``reason``) and in /api/health."""

    UNKNOWN_SUBSCRIPTION = "unknownSubscription"
    BAD_CLIENT_STATE = "badClientState"
    BAD_VALIDATION_TOKEN = "badValidationToken"
    DECRYPTION_FAILED = "decryptionFailed"
    OUTSIDE_CALENDAR_WINDOW = "outsideCalendarWindow"
    MALFORMED = "malformed"
    TOO_LARGE = "tooLarge"
    NO_SUBSCRIPTION_ID = "noSubscriptionId"
    NO_CHANGE_TYPE = "noChangeType"
    UNKNOWN_LIFECYCLE_EVENT = "unknownLifecycleEvent"
    # Multi-tenant: an item naming another tenant than its subscription's, or one of a suspended tenant.
    TENANT_MISMATCH = "tenantMismatch"
    TENANT_SUSPENDED = "tenantSuspended"
    # Admin consent callbacks (GET /api/consent) that registered nothing, and consent starts refused.
    CONSENT_NO_STATE = "consentNoState"
    CONSENT_BAD_STATE = "consentBadState"
    CONSENT_EXPIRED_STATE = "consentExpiredState"
    CONSENT_REUSED_STATE = "consentReusedState"
    CONSENT_DECLINED = "consentDeclined"
    CONSENT_NOT_GRANTED = "consentNotGranted"
    CONSENT_BAD_TENANT = "consentBadTenant"
    CONSENT_TENANT_REMOVING = "consentTenantRemoving"
    CONSENT_BAD_NAME = "consentBadName"


# The reasons notifications.check_items gives (Rejection.reason); any other is an item that cannot be stored.
_CHECKED = {
    "no subscriptionId": Reason.NO_SUBSCRIPTION_ID,
    "unknown subscription": Reason.UNKNOWN_SUBSCRIPTION,
    "clientState mismatch": Reason.BAD_CLIENT_STATE,
    "no changeType": Reason.NO_CHANGE_TYPE,
    "unknown lifecycleEvent": Reason.UNKNOWN_LIFECYCLE_EVENT,
    "tenant mismatch": Reason.TENANT_MISMATCH,
}


def reason_of(rejection: str) -> Reason:
    """The Reason of one of check_items' rejection texts."""
    return _CHECKED.get(rejection, Reason.MALFORMED)


BUCKET = timedelta(minutes=5)
# What /api/health shows; a bucket that ended before the longest window began is of no use.
LAST_HOUR = timedelta(hours=1)
LAST_DAY = timedelta(hours=24)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_of(moment: datetime) -> datetime:
    """The start of the bucket ``moment`` falls in (UTC)."""
    return moment - (moment - _EPOCH) % BUCKET


def bucket_key(bucket: datetime) -> str:
    """A bucket as a table key that sorts in time order: ``YYYYMMDDHHMM`` in UTC."""
    return bucket.astimezone(UTC).strftime("%Y%m%d%H%M")


def parse_bucket(key: str) -> datetime | None:
    """The bucket a key names; None when it names none."""
    try:
        return datetime.strptime(key, "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def within(bucket: datetime, window: timedelta, now: datetime) -> bool:
    """Whether the bucket overlaps the ``window`` before ``now`` (a window reads up to one bucket long)."""
    return bucket + BUCKET > now - window


@dataclass(frozen=True)
class Row:
    """One instance's total for one bucket and reason, as the table holds it."""

    bucket: str
    reason: Reason
    count: int


class Ledger:
    """This process's refusal counts by bucket and reason, and which of them the table lacks.

    Rows carry totals, not increments, so writing one twice is harmless; each instance
    writes only its own rows, so instances never contend. ``instance`` is new for each
    process: a restarted one must not overwrite what its predecessor wrote.
    """

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or uuid.uuid4().hex[:16]
        self._counts: dict[tuple[datetime, Reason], int] = {}
        self._written: dict[tuple[datetime, Reason], int] = {}
        self._newest: datetime | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, reason: Reason, n: int, now: datetime) -> None:
        """Count ``n`` refusals for ``reason`` at ``now``."""
        bucket = bucket_of(now)
        if self._newest is None or bucket > self._newest:
            self._newest = bucket
            self._forget(now)  # once per bucket: keeps memory bounded however long storage is down
        key = (bucket, reason)
        self._counts[key] = self._counts.get(key, 0) + n

    def due(self, now: datetime) -> list[Row]:
        """The rows whose total the table does not hold yet."""
        self._forget(now)
        return [
            Row(bucket_key(bucket), reason, total)
            for (bucket, reason), total in self._counts.items()
            if self._written.get((bucket, reason)) != total
        ]

    def written(self, rows: Iterable[Row], now: datetime) -> None:
        """Note that the table holds ``rows``."""
        for row in rows:
            bucket = parse_bucket(row.bucket)
            if bucket is not None and (bucket, row.reason) in self._counts:
                self._written[(bucket, row.reason)] = row.count
        self._forget(now)

    async def flush(self, write: Callable[[list[Row]], Awaitable[None]], now: datetime) -> int:
        """Write the due rows with ``write``; return how many. A failure raises and leaves them due.

        One flush at a time per process: two writes of one row landing out of order would
        leave the older total in the table.
        """
        async with self._flush_lock():
            rows = self.due(now)
            if rows:
                await write(rows)
                self.written(rows, now)
            return len(rows)

    @property
    def flushing(self) -> bool:
        """Whether a flush is under way."""
        return self._lock is not None and self._lock.locked()

    def clear(self) -> None:
        """Forget every count (tests)."""
        self._counts.clear()
        self._written.clear()
        self._newest = None

    def _forget(self, now: datetime) -> None:
        """Drop past buckets the table holds (counts go to the bucket of the moment: a past one never grows),
        and any bucket no window of health reaches any more, written or not."""
        current = bucket_of(now)
        for key, total in list(self._counts.items()):
            if (key[0] < current and self._written.get(key) == total) or not within(key[0], LAST_DAY, now):
                del self._counts[key]
                self._written.pop(key, None)

    def _flush_lock(self) -> asyncio.Lock:
        # An asyncio lock belongs to one event loop; the services are rebuilt when the loop changes.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


@dataclass(frozen=True)
class Totals:
    """Refusals by reason over the last hour and the last 24 hours, every instance's summed."""

    last_hour: Mapping[Reason, int]
    last_day: Mapping[Reason, int]

    def as_json(self) -> dict[str, dict[str, int]]:
        """/api/health's ``refusals``: every reason, zero included, so the fields never come and go."""
        return {
            "lastHour": {reason.value: self.last_hour.get(reason, 0) for reason in Reason},
            "last24Hours": {reason.value: self.last_day.get(reason, 0) for reason in Reason},
        }


def summarize(rows: Iterable[tuple[str, str, int]], now: datetime) -> Totals:
    """Sum (bucket key, reason, count) rows into the two windows; unknown reasons and buckets are skipped."""
    hour: dict[Reason, int] = {}
    day: dict[Reason, int] = {}
    known = {reason.value: reason for reason in Reason}
    for key, name, count in rows:
        bucket, reason = parse_bucket(key), known.get(name)
        if bucket is None or reason is None:
            continue  # a row of another version of the app, or not the app's
        if within(bucket, LAST_DAY, now):
            day[reason] = day.get(reason, 0) + count
        if within(bucket, LAST_HOUR, now):
            hour[reason] = hour.get(reason, 0) + count
    return Totals(hour, day)


# This process's ledger: count() adds to it, the flushers the services start write it out.
_ledger = Ledger()


def ledger() -> Ledger:
    """This process's ledger."""
    return _ledger


def count(reason: Reason, n: int = 1, source: str = "notifications") -> None:
    """Count ``n`` items refused for ``reason``: telemetry at once, the refusals table within a flush interval.

    ``source`` says where (notifications, lifecycle, processor...): a telemetry dimension only.
    """
    if n > 0:
        telemetry.count(telemetry.REJECTED, n, reason=reason.value, source=source)
        _ledger.add(reason, n, utcnow())
