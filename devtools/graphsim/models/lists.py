"""SharePoint lists and list items as Graph shows them, and their change notifications.

Every change takes the list's next sequence number (listItem delta walks back from the
newest: routes/lists.py); a deleted item stays as a tombstone with a ``deleted`` facet.
Subscriptions on ``sites/{site-id}/lists/{list-id}`` accept only ``updated`` and get
notifications without resource data, as Graph sends for lists.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import SimClock, item_time
from .subscriptions import RESOURCE_RULES, Listener, ResourceRule

LIST_MAX_MINUTES = 42300
# A list as a path and as a subscription resource: sites/{site-id}/lists/{list-id}.
LIST_PATH = r"sites/(?P<site>[^/]+)/lists/(?P<list>[^/]+)"


@dataclass
class ListItem:
    """One list item, live or tombstoned."""

    id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    version: int = 1
    seq: int = 0
    deleted: bool = False


@dataclass
class SpList:
    """One SharePoint list with its change sequence and token epoch."""

    site_id: str
    id: str
    name: str
    items: dict[str, ListItem] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0
    next_id: int = 1
    delta_runs: int = 0

    @property
    def resource(self) -> str:
        """The subscription resource for this list (lower case, for matching)."""
        return f"sites/{self.site_id}/lists/{self.id}".lower()


class ListStore:
    """Every simulated list, keyed by (site id, list id), case-insensitively."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.lists: dict[tuple[str, str], SpList] = {}
        self.listeners: list[Listener] = []

    def find(self, site_id: str, list_id: str) -> SpList | None:
        """A list by its site and list ids."""
        return self.lists.get((site_id.lower(), list_id.lower()))

    def create_list(self, site_id: str, list_id: str | None, name: str) -> SpList:
        """A new, empty list."""
        lst = SpList(site_id, list_id or str(uuid.uuid4()), name)
        if (site_id.lower(), lst.id.lower()) in self.lists:
            raise ValueError(f"list {lst.id} exists")
        self.lists[(site_id.lower(), lst.id.lower())] = lst
        return lst

    def _stamp(self, lst: SpList, item: ListItem) -> None:
        lst.seq += 1
        item.seq = lst.seq
        # Kept in sequence order, so the changes since a token are a walk back from the end.
        lst.items.pop(item.id, None)
        lst.items[item.id] = item
        for listener in self.listeners:
            listener(lst.resource, [("updated", {})])

    def add_item(self, lst: SpList, fields: dict[str, Any]) -> ListItem:
        """A new item with these column values (``Title`` and the like)."""
        now = self.clock.now()
        item = ListItem(str(lst.next_id), dict(fields), now, now)
        lst.next_id += 1
        self._stamp(lst, item)
        return item

    def update_item(self, lst: SpList, item: ListItem, fields: dict[str, Any]) -> None:
        """Change some column values: a new version."""
        item.fields.update(fields)
        item.version += 1
        item.modified = self.clock.now()
        self._stamp(lst, item)

    def delete_item(self, lst: SpList, item: ListItem) -> None:
        """Delete an item; delta reports it with a ``deleted`` facet."""
        item.deleted = True
        self._stamp(lst, item)

    def restore_item(self, lst: SpList, item: ListItem) -> None:
        """Bring a deleted item back from the recycle bin, under its id: a new version."""
        item.deleted = False
        item.version += 1
        item.modified = self.clock.now()
        self._stamp(lst, item)


def item_json(lst: SpList, item: ListItem, graph_url: str, fields: bool) -> dict[str, Any]:
    """A listItem as Graph renders it (``fields`` when expanded)."""
    guid = str(uuid.UUID(bytes=hashlib.blake2b(f"{lst.id}/{item.id}".encode(), digest_size=16).digest())).upper()
    parent = {"id": lst.id, "siteId": lst.site_id}
    if item.deleted:
        return {"id": item.id, "parentReference": parent, "deleted": {"state": "deleted"}}
    body: dict[str, Any] = {
        "id": item.id,
        "eTag": f'"{{{guid}}},{item.version}"',
        "createdDateTime": item_time(item.created),
        "lastModifiedDateTime": item_time(item.modified),
        "webUrl": f"https://contoso.sharepoint.com/Lists/{lst.name}/DispForm.aspx?ID={item.id}",
        "parentReference": parent,
        "contentType": {"id": "0x0100", "name": "Item"},
    }
    if fields:
        body["fields"] = {"id": item.id, **item.fields, "Modified": item_time(item.modified)}
    return body


def _exists(state: Any, resource: str) -> bool:
    m = re.match(rf"^/?{LIST_PATH}/?$", resource.strip(), re.IGNORECASE)
    return m is not None and state.lists.find(m["site"], m["list"]) is not None


RESOURCE_RULES.append(
    ResourceRule(
        re.compile(rf"^/?{LIST_PATH}/?$", re.IGNORECASE), frozenset({"updated"}), LIST_MAX_MINUTES, "list", _exists
    )
)
