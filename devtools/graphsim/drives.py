"""Drive and driveItem model with a per-drive change sequence, as OneDrive for Business keeps.

Every mutation takes the next sequence number; the changed item and all its ancestor
folders are stamped with it, because OneDrive reports ancestors of a changed item in
``delta`` too.  Deleted items stay as tombstones so ``delta`` can report them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .clock import SimClock, item_time

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_item_id() -> str:
    """An id shaped like OneDrive for Business item ids (``01`` + 32 base32 characters)."""
    return "01" + "".join(secrets.choice(_B32) for _ in range(32))


def new_drive_id() -> str:
    """An id shaped like a SharePoint drive id (``b!`` + 64 url-safe characters)."""
    return "b!" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()


@dataclass
class Item:
    """One driveItem, live or tombstoned."""

    id: str
    name: str
    parent_id: str | None
    is_folder: bool
    created: datetime
    modified: datetime
    content: bytes = b""
    guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    version: int = 1  # bumps on every change: the eTag
    content_version: int = 1  # bumps on content changes: the cTag
    seq: int = 0  # the drive's change sequence when last touched
    deleted: bool = False


@dataclass
class Drive:
    """A document library or OneDrive for Business drive."""

    id: str
    user_id: str | None
    site_id: str | None
    root_id: str
    created: datetime
    items: dict[str, Item] = field(default_factory=dict)
    seq: int = 0
    token_epoch: int = 0  # bumped by expire-tokens: older delta tokens answer 410
    delta_runs: int = 0
    delta_requests: int = 0


class DriveStore:
    """All drives; mutations notify listeners (the subscription fan-out)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.drives: dict[str, Drive] = {}
        self.listeners: list[Callable[[Drive, int], None]] = []

    def create_drive(
        self, drive_id: str | None = None, user_id: str | None = None, site_id: str | None = None
    ) -> Drive:
        """Create a drive with its root folder."""
        now = self.clock.now()
        drive_id = drive_id or new_drive_id()
        if drive_id in self.drives:
            raise ValueError(f"drive {drive_id} exists")
        root = Item(id=new_item_id(), name="root", parent_id=None, is_folder=True, created=now, modified=now)
        drive = Drive(id=drive_id, user_id=user_id, site_id=site_id, root_id=root.id, created=now)
        drive.items[root.id] = root
        self.drives[drive_id] = drive
        return drive

    def find(self, kind: str, key: str) -> Drive | None:
        """Look a drive up by ``drives``/``users``/``sites`` and id."""
        if kind == "drives":
            return self.drives.get(key)
        for d in self.drives.values():
            if (kind == "users" and d.user_id and d.user_id.lower() == key.lower()) or (
                kind == "sites" and d.site_id and d.site_id.lower() == key.lower()
            ):
                return d
        return None

    def item(self, drive: Drive, item_id: str) -> Item | None:
        """A live item by id; ``root`` names the root folder."""
        it = drive.items.get(drive.root_id if item_id == "root" else item_id)
        return None if it is None or it.deleted else it

    def _touch(self, drive: Drive, item: Item) -> None:
        drive.seq += 1
        item.seq = drive.seq
        parent = drive.items.get(item.parent_id) if item.parent_id else None
        while parent is not None:
            parent.seq = drive.seq
            parent = drive.items.get(parent.parent_id) if parent.parent_id else None

    def _notify(self, drive: Drive, changes: int) -> None:
        for listener in self.listeners:
            listener(drive, changes)

    def add_item(
        self,
        drive: Drive,
        name: str,
        parent_id: str | None = None,
        folder: bool = False,
        content: str | bytes = b"",
        notify: bool = True,
    ) -> Item:
        """Create a file or folder under ``parent_id`` (default: the root)."""
        parent = self.item(drive, parent_id or "root")
        if parent is None or not parent.is_folder:
            raise KeyError("parent not found")
        now = self.clock.now()
        data = content.encode() if isinstance(content, str) else content
        item = Item(
            id=new_item_id(),
            name=name,
            parent_id=parent.id,
            is_folder=folder,
            created=now,
            modified=now,
            content=b"" if folder else data,
        )
        drive.items[item.id] = item
        self._touch(drive, item)
        if notify:
            self._notify(drive, 1)
        return item

    def update_item(
        self, drive: Drive, item: Item, name: str | None = None, content: str | bytes | None = None
    ) -> Item:
        """Rename and/or replace content; eTag always changes, cTag on content."""
        if name is not None:
            item.name = name
        if content is not None and not item.is_folder:
            item.content = content.encode() if isinstance(content, str) else content
            item.content_version += 1
        item.version += 1
        item.modified = self.clock.now()
        self._touch(drive, item)
        self._notify(drive, 1)
        return item

    def delete_item(self, drive: Drive, item: Item) -> int:
        """Tombstone an item and its descendants; returns how many were deleted."""
        if item.id == drive.root_id:
            raise ValueError("cannot delete the root")
        victims = [item]
        for candidate in list(drive.items.values()):
            if not candidate.deleted and self._is_under(drive, candidate, item.id):
                victims.append(candidate)
        for v in victims:
            v.deleted = True
            v.version += 1
            v.modified = self.clock.now()
        # Stamp children first so the folder's ancestors carry the newest sequence.
        for v in reversed(victims):
            self._touch(drive, v)
        self._notify(drive, len(victims))
        return len(victims)

    @staticmethod
    def _is_under(drive: Drive, item: Item, ancestor_id: str) -> bool:
        pid = item.parent_id
        while pid is not None:
            if pid == ancestor_id:
                return True
            parent = drive.items.get(pid)
            pid = parent.parent_id if parent else None
        return False

    def render_source(self, drive: Drive, item_id: str) -> Item | None:
        """An item by id, tombstones included (delta reports deletions)."""
        return drive.items.get(item_id)

    def depth(self, drive: Drive, item: Item) -> int:
        """Distance from the root (root = 0)."""
        n, pid = 0, item.parent_id
        while pid is not None:
            n += 1
            parent = drive.items.get(pid)
            pid = parent.parent_id if parent else None
        return n

    def path_of(self, drive: Drive, item: Item) -> str:
        """``/drive/root:`` style path of an item's folder."""
        names: list[str] = []
        pid = item.parent_id
        while pid is not None and pid != drive.root_id:
            parent = drive.items[pid]
            names.append(parent.name)
            pid = parent.parent_id
        return "/drive/root:" + "".join("/" + n for n in reversed(names))

    def children_count(self, drive: Drive, item: Item) -> int:
        """Live children of a folder."""
        return sum(1 for c in drive.items.values() if c.parent_id == item.id and not c.deleted)


def content_hash(data: bytes) -> str:
    """quickXorHash stand-in: base64 SHA-1 (clients treat it as opaque)."""
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


__all__ = ["Drive", "DriveStore", "Item", "content_hash", "item_time", "new_item_id"]
