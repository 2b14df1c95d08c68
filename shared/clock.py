"""Time helpers: every timestamp is an aware UTC datetime, written as ISO 8601 with Z."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a Z suffix."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp such as Graph's (7 fractional digits, Z suffix)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Graph writes 7 fractional digits; Python 3.11 accepts at most 6.
    head, sep, tail = value.partition(".")
    if sep:
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits) :]
        value = f"{head}.{digits[:6]}{zone}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def optional_time(value: Any) -> datetime | None:
    """A timestamp from a JSON value, or None when it is absent or not one."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None
