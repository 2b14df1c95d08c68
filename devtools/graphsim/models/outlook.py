"""Outlook mailboxes: mail folders and messages, the primary calendar's events, contact folders and contacts.

Ids are immutable: a moved message keeps its id, as with ``Prefer: IdType="ImmutableId"``.
Moving or changing an item gives it a new ``changeKey``. Every change is logged with the
folders it left and entered, for delta (routes/outlook.py). Subscriptions on
``users/{id}/mailFolders/{id}/messages``, ``users/{id}/messages``, ``users/{id}/events``
(or ``calendar/events``), ``users/{id}/contacts`` and ``users/{id}/contactFolders/{id}/contacts``
accept created, updated and deleted and live at most 10,080 minutes; their notifications
carry ``resourceData`` with ``@odata.type``, ``@odata.id`` and ``id``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import graph_time
from .subscriptions import RESOURCE_KEY, RESOURCE_RULES, Listener, ResourceRule

OUTLOOK_MAX_MINUTES = 10080
# With resource data (subscription.md, maximum length of subscription per resource type).
OUTLOOK_RICH_MAX_MINUTES = 1440
CHANGES = frozenset({"created", "updated", "deleted"})
MAIL_FOLDERS = ("inbox", "drafts", "sentitems", "deleteditems", "archive")
_NOTIFY_TYPE = {
    "message": ("Messages", "#Microsoft.OutlookServices.Message"),
    "event": ("Events", "#Microsoft.OutlookServices.Event"),
    "contact": ("Contacts", "#Microsoft.OutlookServices.Contact"),
}


@dataclass
class Folder:
    """A mail or contact folder; ``well_known`` is its well-known name (inbox, ...), if any."""

    id: str
    name: str
    parent: str
    well_known: str = ""


@dataclass
class Item:
    """A message, event or contact: its live properties and where it lives."""

    id: str
    kind: str
    folder: str
    props: dict[str, Any]
    created: datetime
    modified: datetime
    change_key: str = ""
    deleted: bool = False
    seq: int = 0  # the mailbox sequence of its last change


@dataclass
class Mailbox:
    """One user's mailbox. ``log`` holds (seq, item id, folder before, folder after) for every change."""

    user: str
    mail: dict[str, Folder] = field(default_factory=dict)
    contact_folders: dict[str, Folder] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    log: list[tuple[int, str, str, str]] = field(default_factory=list)
    seq: int = 0
    epoch: int = 0
    delta_requests: int = 0

    @property
    def default_contacts(self) -> str:
        return next(f.id for f in self.contact_folders.values() if f.well_known == "contacts")

    def folder_id(self, kind: str, name: str) -> str | None:
        """A folder's id from its id or well-known name (case-insensitive, as Graph)."""
        folders = self.mail if kind == "mail" else self.contact_folders
        if name in folders:
            return name
        return next((f.id for f in folders.values() if f.well_known and f.well_known == name.lower()), None)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


class OutlookStore:
    """Every mailbox the simulator holds."""

    def __init__(self, now: Any) -> None:
        self._now = now
        self.mailboxes: dict[str, Mailbox] = {}
        self.listeners: list[Listener] = []

    def create_mailbox(self, user: str | None) -> Mailbox:
        """A mailbox with the usual mail folders and a default contacts folder."""
        user = user or str(uuid.uuid4())
        if user.lower() in self.mailboxes:
            raise ValueError(f"mailbox {user} exists")
        box = Mailbox(user)
        for name in MAIL_FOLDERS:
            folder = Folder(_new_id("AAMkF"), name.capitalize(), "", name)
            box.mail[folder.id] = folder
        contacts = Folder(_new_id("AAMkC"), "Contacts", "", "contacts")
        box.contact_folders[contacts.id] = contacts
        self.mailboxes[user.lower()] = box
        return box

    def mailbox(self, user: str) -> Mailbox | None:
        return self.mailboxes.get(user.lower())

    def add_folder(self, box: Mailbox, kind: str, name: str, parent: str | None) -> Folder:
        folders = box.mail if kind == "mail" else box.contact_folders
        if parent is not None and parent not in folders:
            raise KeyError(parent)
        folder = Folder(_new_id("AAMkF" if kind == "mail" else "AAMkC"), name, parent or "")
        folders[folder.id] = folder
        return folder

    def add_item(self, box: Mailbox, kind: str, folder: str, props: dict[str, Any]) -> Item:
        now = self._now()
        item = Item(
            _new_id({"message": "AAMkM", "event": "AAMkE", "contact": "AAMkP"}[kind]), kind, folder, props, now, now
        )
        box.items[item.id] = item
        self._changed(box, item, "", folder, "created")
        return item

    def update_item(self, box: Mailbox, item: Item, props: dict[str, Any]) -> None:
        item.props.update(props)
        item.modified = self._now()
        self._changed(box, item, item.folder, item.folder, "updated")

    def move_item(self, box: Mailbox, item: Item, folder: str) -> None:
        before, item.folder = item.folder, folder
        item.modified = self._now()
        self._changed(box, item, before, folder, "updated")

    def delete_item(self, box: Mailbox, item: Item) -> None:
        item.deleted = True
        self._changed(box, item, item.folder, "", "deleted")

    def restore_item(self, box: Mailbox, item: Item) -> None:
        """A deleted item back in its folder, under its immutable id (moved back from Deleted Items)."""
        item.deleted = False
        item.modified = self._now()
        self._changed(box, item, "", item.folder, "created")

    def _changed(self, box: Mailbox, item: Item, before: str, after: str, change_type: str) -> None:
        box.seq += 1
        item.seq = box.seq
        item.change_key = f"CQAAAB{box.seq:08d}"
        box.log.append((box.seq, item.id, before, after))
        self._notify(box, item, before, after, change_type)

    def _notify(self, box: Mailbox, item: Item, before: str, after: str, change_type: str) -> None:
        path, odata = _NOTIFY_TYPE[item.kind]
        user = box.user
        extra = {
            "resource": f"Users/{user}/{path}/{item.id}",
            "resourceData": {"@odata.type": odata, "@odata.id": f"Users/{user}/{path}/{item.id}", "id": item.id},
            # What a subscription with includeResourceData gets encrypted (state.py); never sent as is.
            RESOURCE_KEY: render(box, item),
        }
        targets: list[tuple[str, str]] = []
        u = user.lower()
        if item.kind == "event":
            targets += [(f"users/{u}/events", change_type), (f"users/{u}/calendar/events", change_type)]
        else:
            folders = box.mail if item.kind == "message" else box.contact_folders
            segment = "mailfolders" if item.kind == "message" else "contactfolders"
            leaf = "messages" if item.kind == "message" else "contacts"
            moved = bool(before and after and before != after)
            # A move leaves one folder and enters another; anything else stays in its folder.
            changes = [(before, "deleted"), (after, "created")] if moved else [(before or after, change_type)]
            for folder_id, kind in changes:
                folder = folders.get(folder_id)
                names = [folder_id.lower()] + ([folder.well_known] if folder and folder.well_known else [])
                targets += [(f"users/{u}/{segment}/{name}/{leaf}", kind) for name in names]
                if item.kind == "contact" and folder is not None and folder.well_known == "contacts":
                    targets.append((f"users/{u}/contacts", kind))
            if item.kind == "message":
                targets.append((f"users/{u}/messages", change_type))
        for resource, kind in dict.fromkeys(targets):
            for listener in self.listeners:
                listener(resource, [(kind, extra)])


def render(box: Mailbox, item: Item) -> dict[str, Any]:
    """A message, event or contact as Graph returns it."""
    body: dict[str, Any] = {
        "@odata.type": f"#microsoft.graph.{item.kind}",
        "@odata.etag": f'W/"{item.change_key}"',
        "id": item.id,
        "createdDateTime": graph_time(item.created),
        "lastModifiedDateTime": graph_time(item.modified),
        "changeKey": item.change_key,
        **item.props,
    }
    if item.kind != "event":
        body["parentFolderId"] = item.folder
    return body


_RULES = (
    (r"^/?users/(?P<u>[^/]+)/mailFolders/(?P<f>[^/]+)/messages/?$", "mail"),
    (r"^/?users/(?P<u>[^/]+)/messages/?$", ""),
    (r"^/?users/(?P<u>[^/]+)/(?:calendar/)?events/?$", ""),
    (r"^/?users/(?P<u>[^/]+)/contactFolders/(?P<f>[^/]+)/contacts/?$", "contacts"),
    (r"^/?users/(?P<u>[^/]+)/contacts/?$", ""),
)


def _exists_for(pattern: re.Pattern[str], folder_kind: str) -> Any:
    def exists(state: Any, resource: str) -> bool:
        m = pattern.match(resource.strip())
        box = state.outlook.mailbox(m["u"]) if m else None
        if m is None or box is None:
            return False
        return not folder_kind or box.folder_id(folder_kind, m["f"]) is not None

    return exists


for _text, _folder_kind in _RULES:
    _pattern = re.compile(_text, re.IGNORECASE)
    RESOURCE_RULES.append(
        ResourceRule(
            _pattern,
            CHANGES,
            OUTLOOK_MAX_MINUTES,
            "Outlook",
            _exists_for(_pattern, _folder_kind),
            resource_data=True,
            rich_max_minutes=OUTLOOK_RICH_MAX_MINUTES,
        )
    )
