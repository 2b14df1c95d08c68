"""The simulator's clock: wall time plus an offset the control API can advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SimClock:
    """Wall clock that tests can push forward to make subscriptions expire."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        """Current simulated time (timezone-aware UTC)."""
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Shift the clock forward (or back, with a negative value)."""
        self.offset += timedelta(seconds=seconds)


def graph_time(value: datetime) -> str:
    """Format like Graph's subscription timestamps: 7 fractional digits and a Z."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def item_time(value: datetime) -> str:
    """Format like driveItem timestamps, which OneDrive for Business sends without fraction."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp as Graph accepts it (7-digit fractions, Z or offsets)."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python's parser takes at most 6 fractional digits; Graph sends 7.
    if "." in s:
        head, rest = s.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        s = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    value = datetime.fromisoformat(s)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
