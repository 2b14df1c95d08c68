"""The positions Outlook sources store as links, the calendar window, and item parsing (pure).

A position is written as ``outlook:`` and compact JSON, so the synchronizer can
store it like any link. It is small: a Graph link and a few short fields, never a
list of folders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.clock import optional_time, parse_time
from shared.errors import GraphRequestError
from shared.model.changes import SourceChange

PREFIX = "outlook:"
# The window is re-based once its start is more than this far behind where it should start.
WINDOW_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Position:
    """Where an Outlook source's next page is.

    ``link`` is Graph's nextLink or deltaLink (None: the start of a round, or of the
    folder in progress). A walk names the ``folder`` in progress (its row key in the
    folders table; None: list the folders first) and whether every folder is read
    from scratch (``full``, an enumeration). Events carry their calendar ``window``.
    ``final`` marks the position a round ended at.
    """

    link: str | None = None
    folder: str | None = None
    full: bool = False
    window: tuple[str, str] | None = None
    final: bool = False


def encode(position: Position) -> str:
    """The position as a link string."""
    data: dict[str, Any] = {}
    if position.link is not None:
        data["l"] = position.link
    if position.folder is not None:
        data["f"] = position.folder
    if position.full:
        data["a"] = 1
    if position.window is not None:
        data["w"] = list(position.window)
    if position.final:
        data["d"] = 1
    return PREFIX + json.dumps(data, separators=(",", ":"))


def decode(link: str) -> Position:
    """A stored link as a position; a plain Graph link (a 410's Location) is taken as is."""
    if not link.startswith(PREFIX):
        return Position(link=link)
    try:
        data = json.loads(link[len(PREFIX) :])
        window = data.get("w")
        return Position(
            link=data.get("l"),
            folder=data.get("f"),
            full=bool(data.get("a")),
            window=(str(window[0]), str(window[1])) if window else None,
            final=bool(data.get("d")),
        )
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise GraphRequestError(f"not an Outlook position: {link[:80]!r}") from exc


def window_around(now: datetime, days_past: int, days_ahead: int) -> tuple[str, str]:
    """The calendar window for ``now``: whole UTC days, from ``days_past`` ago to ``days_ahead`` on."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days_past)
    end = today + timedelta(days=days_ahead + 1)
    return _iso(start), _iso(end)


def window_stale(window: tuple[str, str] | None, now: datetime, days_past: int) -> bool:
    """True when a stored window starts more than WINDOW_SLACK before the window for ``now``."""
    if window is None:
        return True
    wanted = parse_time(window_around(now, days_past, 0)[0])
    return wanted - parse_time(window[0]) > WINDOW_SLACK


def outside_window(event: Any, window: tuple[str, str]) -> bool:
    """True when an event (as Graph renders it, e.g. decrypted resource data) lies wholly outside ``window``.

    Its ``start`` and ``end`` are dateTimeTimeZone values; a time zone other than UTC
    (or an IANA name) cannot be placed here, and such an event counts as inside.
    """
    start, end = _zoned(event, "start"), _zoned(event, "end")
    if start is None or end is None:
        return False
    return end <= parse_time(window[0]) or start >= parse_time(window[1])


def _zoned(event: Any, edge: str) -> datetime | None:
    value = event.get(edge) if isinstance(event, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        return None
    zone = str(value.get("timeZone") or "UTC")
    try:
        moment = datetime.fromisoformat(value["dateTime"][:26].rstrip("Z"))
    except ValueError:
        return None
    if zone.upper() in ("UTC", "Z", "ETC/UTC"):
        return moment.replace(tzinfo=UTC)
    try:
        from zoneinfo import ZoneInfo

        return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    except (KeyError, ValueError):
        return None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def outlook_version(item: Mapping[str, Any]) -> str:
    """What changes with every change of an Outlook item: its changeKey.

    Outlook's ``@odata.etag`` is the changeKey quoted as a weak ETag (``W/"CQAAAB..."``):
    unquoted, it gives the same version when a ``$select`` left ``changeKey`` out, so a
    delta page and a rich notification of one change agree.
    """
    key = item.get("changeKey")
    if isinstance(key, str) and key:
        return key
    etag = item.get("@odata.etag")
    if isinstance(etag, str) and etag:
        return etag.removeprefix("W/").strip('"')
    modified = item.get("lastModifiedDateTime")
    return str(modified) if modified else ""


def outlook_change(item: Any) -> SourceChange | None:
    """One delta item as a change: ``@removed`` is a deletion; the version is its changeKey."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    if "@removed" in item:
        return SourceChange(item["id"], None, None)
    return SourceChange(
        item["id"],
        outlook_version(item),
        item,
        created_at=optional_time(item.get("createdDateTime")),
        modified_at=optional_time(item.get("lastModifiedDateTime")),
    )
