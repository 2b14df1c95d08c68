"""The change event: the contract consumers read from the graph-changes queue.

Its JSON form is described by schemas/change-event.schema.json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.clock import format_time
from shared.model.changes import SourceChange
from shared.model.cursor import Mode
from shared.model.index import IndexWrite, Known
from shared.model.notifications import MAX_MESSAGE_JSON_BYTES
from shared.model.tenant import Tenant

SCHEMA_VERSION = 1


def event_id(kind: str, container_id: str, item_id: str, change_type: str, version: str) -> str:
    """A stable id: the same change of the same item always gets the same id.

    ``version`` is what changes with every change of the item (a driveItem's eTag);
    for a deletion it is the last version the index knew, so a delete, a restore
    and a second delete of one item give two deletions with different ids.
    """
    digest = hashlib.sha256("\x1f".join((kind, container_id, item_id, change_type, version)).encode())
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
    # The Microsoft Entra tenant the change happened in ('' only in tests that build events by hand).
    tenant_id: str = ""

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
        } | ({"tenantId": self.tenant_id} if self.tenant_id else {})

    def to_json(self) -> str:
        """Serialise compactly for the queue."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def fit_event(event: ChangeEvent, limit: int = MAX_MESSAGE_JSON_BYTES) -> str:
    """The event's JSON, without its item (``itemOmitted``) when it would not fit a message."""
    text = event.to_json()
    if len(text.encode("utf-8")) <= limit:
        return text
    slim = event.to_dict() | {"item": None, "itemOmitted": True}
    return json.dumps(slim, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Classified:
    """The events one delta page yields, and the index rows to write once they are stored."""

    events: list[ChangeEvent]
    writes: list[IndexWrite]


@dataclass(frozen=True)
class Context:
    """What classification needs to know about the pass a page belongs to."""

    mode: Mode
    kind: str
    container_id: str
    subscription_id: str
    resource: str
    observed_at: datetime
    pass_id: str = ""
    since: datetime | None = None
    tenant_id: str = ""


# Graph's timestamps and storage's clock may disagree a little.
CLOCK_SKEW = timedelta(minutes=1)


def change_type_of(change: SourceChange, known: Known | None, mode: Mode, since: datetime | None) -> str | None:
    """created, updated, deleted, or None when the change is no news.

    - a deletion is news once: the index still holds the item live, or never saw it;
    - an item the index holds at the same version is no news (a repeated run, or an
      enumeration of an unchanged item), unless a delta round reports a new ``detail``;
    - a restored item (the index holds a tombstone) is created again;
    - an item new to the index is created, except in a baseline or resync, where the
      index may not have seen it: there it is news only if it changed after ``since``
      (created if it was also created after ``since``), so a resync does not report
      every item of the drive.
    """
    if change.version is None:
        return None if known is not None and known.deleted else "deleted"
    if known is not None:
        if known.deleted:
            return "created"
        if known.version != change.version or _detail_news(change, known, mode):
            return "updated"
        return None
    if mode in (Mode.DELTA, Mode.FULL) or since is None:
        return "created"
    threshold = since - CLOCK_SKEW
    if not change.dated:
        # No modification time to tell whether it changed since: only an item created since is news.
        return "created" if change.created_at is not None and change.created_at >= threshold else None
    if change.modified_at is not None and change.modified_at < threshold:
        return None
    if change.created_at is not None and change.created_at < threshold:
        return "updated"
    return "created"


def classify_page(changes: list[SourceChange], known: dict[str, Known], context: Context) -> Classified:
    """Turn one delta page into events and index rows, given what the index holds for its items.

    Deterministic in its inputs, so a page read again after a crash yields the same
    ids and change types. Every live item of an enumerating pass is marked with the
    pass id, news or not, so deletions can be found from the rows it did not mark.
    """
    latest: dict[str, SourceChange] = {}
    for change in changes:
        # The same item may appear twice in a page: the last sighting wins.
        latest.pop(change.item_id, None)
        latest[change.item_id] = change
    events: list[ChangeEvent] = []
    writes: list[IndexWrite] = []
    mark = context.pass_id if context.mode.enumerates else ""
    for change in latest.values():
        previous = known.get(change.item_id)
        change_type = change_type_of(change, previous, context.mode, context.since)
        life = previous.life if previous is not None else 0
        if change.version is None:
            version = previous.version if previous is not None else ""
            if change_type is not None:
                events.append(_event(context, change.item_id, "deleted", _lived(version, life), None))
                writes.append(IndexWrite(change.item_id, version, deleted=True, pass_id=mark, life=life))
            continue
        detail = change.detail
        if previous is not None and previous.deleted:
            life += 1  # restored: a new life, whatever version it comes back at
        elif previous is not None and previous.version == change.version and change_type is not None:
            life += 1  # told by its detail alone (a membership change): the version alone cannot tell it apart
        elif previous is not None and context.mode.enumerates:
            detail = previous.detail  # an enumeration lists the detail whole: keep the last round's
        if change_type is not None:
            version = _lived(change.version + (f"+{detail}" if detail else ""), life)
            events.append(_event(context, change.item_id, change_type, version, change.item))
        if change_type is not None or context.mode.enumerates:
            writes.append(IndexWrite(change.item_id, change.version, pass_id=mark, life=life, detail=detail))
    return Classified(events, writes)


def _detail_news(change: SourceChange, known: Known, mode: Mode) -> bool:
    """A delta round reported a detail (a group's members@delta) other than the one last indexed."""
    return not mode.enumerates and bool(change.detail) and change.detail != known.detail


def _lived(version: str, life: int) -> str:
    """The version an event id hashes: in an item's first life, its version; after a restore, with the life."""
    return version if life == 0 else f"{version}~{life}"


def deletions(rows: list[tuple[str, Known]], context: Context) -> tuple[Classified, list[str]]:
    """After an enumeration: events and tombstones for live rows it did not list, and tombstones to purge."""
    events: list[ChangeEvent] = []
    writes: list[IndexWrite] = []
    purge: list[str] = []
    for item_id, known in rows:
        if known.deleted:
            purge.append(item_id)
            continue
        events.append(_event(context, item_id, "deleted", _lived(known.version, known.life), None))
        writes.append(IndexWrite(item_id, known.version, deleted=True, pass_id=context.pass_id, life=known.life))
    return Classified(events, writes), purge


def known_removals_only(changes: list[SourceChange], known: dict[str, Known]) -> list[SourceChange]:
    """The changes without removals of items the index does not hold live.

    For sources whose delta lists items outside its scope as removed (calendarView
    delta outside its window): such a removal is no news unless the item was reported.
    """
    return [c for c in changes if c.version is not None or (c.item_id in known and not known[c.item_id].deleted)]


def _event(context: Context, item_id: str, change_type: str, version: str, item: dict[str, Any] | None) -> ChangeEvent:
    return ChangeEvent(
        id=event_id(context.kind, context.container_id, item_id, change_type, version),
        subscription_id=context.subscription_id,
        resource=context.resource,
        kind=context.kind,
        change_type=change_type,
        item_id=item_id,
        container_id=context.container_id,
        item=item,
        observed_at=context.observed_at,
        resync=context.mode.enumerates,
        tenant_id=context.tenant_id,
    )


TENANT_KIND = "tenant"
TENANT_REMOVED = "removed"


def tenant_removed(tenant: Tenant, now: datetime) -> ChangeEvent:
    """The one event that says a tenant was removed (``tenant.removed``): nothing more will come from it.

    Its id depends on the tenant and when it was added only, so a removal resumed after a
    crash sends the same event again under the same id.
    """
    item = {"id": tenant.tenant_id, "name": tenant.name, "reason": tenant.reason}
    return ChangeEvent(
        id=event_id(TENANT_KIND, tenant.tenant_id, tenant.tenant_id, TENANT_REMOVED, format_time(tenant.added_at)),
        subscription_id=tenant.tenant_id,
        resource=f"tenants/{tenant.tenant_id}",
        kind=TENANT_KIND,
        change_type=TENANT_REMOVED,
        item_id=tenant.tenant_id,
        container_id="tenants",
        item=item,
        observed_at=now,
        tenant_id=tenant.tenant_id,
    )
