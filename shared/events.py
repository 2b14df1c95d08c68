"""The change event: the contract consumers read from the graph-changes queue.

Its JSON form is described by schemas/change-event.schema.json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import format_time, parse_time

SCHEMA_VERSION = 1
# A queue message holds 64 KiB once base64-encoded.
MAX_EVENT_BYTES = (64 * 1024 // 4) * 3


def event_id(kind: str, container_id: str, item_id: str, version: str | None) -> str:
    """A stable id: the same change of the same item always gets the same id.

    ``version`` is what changes with every change of the item (a driveItem's eTag);
    None means the item is gone, and a deletion happens once per item.
    """
    marker = version if version is not None else "\x00deleted"
    digest = hashlib.sha256("\x1f".join((kind, container_id, item_id, marker)).encode())
    return digest.hexdigest()[:40]


@dataclass(frozen=True)
class ChangeEvent:
    """One concrete change of one item, as emitted to the changes queue."""

    id: str
    subscription_id: str
    resource: str
    kind: str
    change_type: str
    item_id: str
    container_id: str
    item: dict[str, Any] | None
    observed_at: datetime
    resync: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object the schema describes."""
        return {
            "schemaVersion": SCHEMA_VERSION,
            "id": self.id,
            "subscriptionId": self.subscription_id,
            "resource": self.resource,
            "kind": self.kind,
            "changeType": self.change_type,
            "itemId": self.item_id,
            "containerId": self.container_id,
            "item": self.item,
            "observedAt": format_time(self.observed_at),
            "resync": self.resync,
        }

    def to_json(self) -> str:
        """Serialise compactly for the queue."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def fit_event(event: ChangeEvent, limit: int = MAX_EVENT_BYTES) -> str:
    """The event's JSON, without its item (``itemOmitted``) when it would not fit a message."""
    text = event.to_json()
    if len(text.encode("utf-8")) <= limit:
        return text
    slim = event.to_dict() | {"item": None, "itemOmitted": True}
    return json.dumps(slim, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Classified:
    """The events a delta yields, and how the item index changes with them."""

    events: list[ChangeEvent]
    upserts: dict[str, str]
    deletes: list[str]


def classify(
    changes: list[Any],
    known: dict[str, str],
    *,
    complete: bool,
    kind: str,
    container_id: str,
    subscription_id: str,
    resource: str,
    observed_at: datetime,
    since: datetime | None = None,
) -> Classified:
    """Turn delta changes (SourceChange) into events, given the versions already known.

    A live item not known before is created, unless its createdDateTime shows it
    existed before ``since`` (when this app began watching, or last looked): then
    it is an update of an item this app had not seen yet. A known item is updated;
    an unchanged version after a resync yields nothing. After a complete
    enumeration, a known item that was not listed has been deleted.
    """
    events: list[ChangeEvent] = []
    upserts: dict[str, str] = {}
    deletes: list[str] = []
    seen: set[str] = set()

    def emit(change_type: str, item_id: str, version: str | None, item: dict[str, Any] | None) -> None:
        events.append(
            ChangeEvent(
                id=event_id(kind, container_id, item_id, version),
                subscription_id=subscription_id,
                resource=resource,
                kind=kind,
                change_type=change_type,
                item_id=item_id,
                container_id=container_id,
                item=item,
                observed_at=observed_at,
                resync=complete,
            )
        )

    for change in changes:
        seen.add(change.item_id)
        if change.version is None:
            # A deletion the index never saw still gets reported: it may predate the index.
            emit("deleted", change.item_id, None, None)
            if change.item_id in known:
                deletes.append(change.item_id)
            continue
        previous = known.get(change.item_id)
        if complete and previous == change.version:
            continue
        is_new = previous is None and not _existed_before(change.item, since)
        emit("created" if is_new else "updated", change.item_id, change.version, change.item)
        upserts[change.item_id] = change.version
    if complete:
        for item_id in known.keys() - seen:
            emit("deleted", item_id, None, None)
            deletes.append(item_id)
    return Classified(events, upserts, deletes)


# Graph's timestamps and this app's clock may disagree a little.
CLOCK_SKEW = timedelta(minutes=1)


def _existed_before(item: dict[str, Any] | None, since: datetime | None) -> bool:
    if since is None or item is None or not isinstance(item.get("createdDateTime"), str):
        return False
    try:
        created = parse_time(item["createdDateTime"])
    except ValueError:
        return False
    return created < since - CLOCK_SKEW
