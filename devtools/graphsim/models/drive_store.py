"""What changes a drive: a per-drive change sequence, as OneDrive for Business keeps.

Every mutation takes the next sequence number; the changed item and all its ancestor
folders are stamped with it, because OneDrive reports ancestors of a changed item in
``delta`` too. Folders carry their live child count and the total size of their live
content, updated on each change. Listeners hear of every change (the subscription fan-out).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..clock import SimClock
from .drives import Drive, Item, new_drive_id, new_item_id, new_item_ids

SAMPLE_IDS = 10


class DriveStore:
    """All drives; mutations notify listeners (the subscription fan-out)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.drives: dict[str, Drive] = {}
        self.listeners: list[Callable[[Drive, int], None]] = []
        self.delta_lag_seconds = 0.0

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
        drive.children[root.id] = []
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
        return drive.live_item(item_id)

    # ------------------------------------------------------------------ bookkeeping

    def _next_seq(self, drive: Drive) -> int:
        drive.seq += 1
        if self.delta_lag_seconds > 0:
            drive.change_times.append((drive.seq, self.clock.now().timestamp()))
        return drive.seq

    @staticmethod
    def _stamp(drive: Drive, item: Item, seq: int) -> None:
        # Moving the entry to the end keeps ``drive.items`` in sequence order.
        item.seq = seq
        drive.items[item.id] = drive.items.pop(item.id)

    def _touch(self, drive: Drive, item: Item, old_parent_id: str | None = None) -> None:
        """Stamp an item and its ancestors (and, after a move, its old ancestors)."""
        seq = self._next_seq(drive)
        self._stamp(drive, item, seq)
        for parent in drive.ancestors(item.parent_id):
            self._stamp(drive, parent, seq)
        for parent in drive.ancestors(old_parent_id):
            if parent.seq != seq:
                self._stamp(drive, parent, seq)

    def _attach(self, drive: Drive, item: Item, sign: int) -> None:
        """Count a live item in (``sign`` 1) or out of (-1) its parent and ancestors' sizes."""
        parent = drive.items.get(item.parent_id) if item.parent_id else None
        if parent is None:
            return
        parent.child_count += sign
        for ancestor in drive.ancestors(parent.id):
            ancestor.size += sign * item.size
        drive.live += sign

    def _notify(self, drive: Drive, changes: int) -> None:
        for listener in self.listeners:
            listener(drive, changes)

    def visible_seq(self, drive: Drive) -> int:
        """The newest sequence delta may report: changes younger than the lag are not yet visible."""
        if self.delta_lag_seconds <= 0:
            drive.change_times.clear()
            return drive.seq
        cutoff = self.clock.now().timestamp() - self.delta_lag_seconds
        log = drive.change_times
        while log and log[0][1] <= cutoff:
            log.popleft()
        return log[0][0] - 1 if log else drive.seq

    # ------------------------------------------------------------------ mutations

    def _parent_folder(self, drive: Drive, parent_id: str | None) -> Item:
        parent = self.item(drive, parent_id or "root")
        if parent is None or not parent.is_folder:
            raise KeyError("parent not found")
        return parent

    def add_item(
        self,
        drive: Drive,
        name: str,
        parent_id: str | None = None,
        folder: bool = False,
        content: str | bytes = b"",
        notify: bool = True,
        created: datetime | None = None,
        modified: datetime | None = None,
    ) -> Item:
        """Create a file or folder under ``parent_id`` (default: the root).

        ``created``/``modified`` stand for a file moved in or migrated with its original
        timestamps; ``modified`` defaults to now and ``created`` to the earlier of now and it.
        """
        parent = self._parent_folder(drive, parent_id)
        now = self.clock.now()
        modified = modified or now
        data = b"" if folder else content.encode() if isinstance(content, str) else content
        item = Item(
            id=new_item_id(),
            name=name,
            parent_id=parent.id,
            is_folder=folder,
            created=created or min(now, modified),
            modified=modified,
            content=data,
            size=len(data),
        )
        drive.items[item.id] = item
        drive.children[parent.id].append(item.id)
        if folder:
            drive.children[item.id] = []
        self._attach(drive, item, 1)
        self._touch(drive, item)
        if notify:
            self._notify(drive, 1)
        return item

    def generate(
        self, drive: Drive, count: int, folders: int, prefix: str = "gen", size_bytes: int = 0
    ) -> tuple[list[str], list[str]]:
        """Create ``count`` files over ``folders`` new folders under the root (0: in the root).

        One change: every new item and the root share one sequence number.  Files store
        no content.  Returns (folder ids, a few file ids).  Does not notify.
        """
        if count < 0 or folders < 0 or size_bytes < 0:
            raise ValueError("count, folders and sizeBytes must not be negative")
        root = drive.items[drive.root_id]
        now = self.clock.now()
        seq = self._next_seq(drive)
        ids = new_item_ids(folders + count)
        folder_ids, file_ids = ids[:folders], ids[folders:]
        items, children = drive.items, drive.children
        for n, fid in enumerate(folder_ids):
            items[fid] = Item(fid, f"{prefix}-folder-{n:05d}", root.id, True, now, now, seq=seq)
            children[fid] = []
        children[root.id].extend(folder_ids)
        homes = [items[fid] for fid in folder_ids] or [root]
        per, extra = divmod(count, len(homes))
        start = 0
        for h, home in enumerate(homes):
            # Contiguous blocks: the first ``extra`` folders take one file more.
            end = start + per + (1 if h < extra else 0)
            block = file_ids[start:end]
            hid = home.id
            for n, iid in enumerate(block, start):
                items[iid] = Item(
                    iid, f"{prefix}-{n:07d}.txt", hid, False, now, now, seq=seq, size=size_bytes, synthetic=True
                )
            children[hid].extend(block)
            home.child_count += len(block)
            home.size += len(block) * size_bytes
            start = end
        root.child_count += len(folder_ids)
        if folder_ids:
            root.size += count * size_bytes
        drive.live += folders + count
        self._stamp(drive, root, seq)
        return folder_ids, file_ids[:SAMPLE_IDS]

    def update_item(
        self,
        drive: Drive,
        item: Item,
        name: str | None = None,
        content: str | bytes | None = None,
        parent_id: str | None = None,
    ) -> Item:
        """Rename, replace content and/or move; eTag always changes, cTag on content.

        A move alone keeps ``lastModifiedDateTime``, as SharePoint keeps a moved file's
        Modified; the old and the new parent folders are both stamped.
        """
        old_parent = None
        target = None if parent_id is None else self._parent_folder(drive, parent_id)
        if target is not None and target.id != item.parent_id:
            if item.parent_id is None or target.id == item.id or drive.is_under(target, item.id):
                raise ValueError("cannot move an item into itself, its descendants, or move the root")
            old_parent = item.parent_id
            self._attach(drive, item, -1)
            drive.children[old_parent].remove(item.id)
            item.parent_id = target.id
            drive.children[target.id].append(item.id)
            self._attach(drive, item, 1)
        if name is not None:
            item.name = name
        if content is not None and not item.is_folder:
            data = content.encode() if isinstance(content, str) else content
            self._attach(drive, item, -1)
            item.content, item.size, item.synthetic = data, len(data), False
            self._attach(drive, item, 1)
            item.content_version += 1
        item.version += 1
        if name is not None or content is not None:
            item.modified = self.clock.now()
        self._touch(drive, item, old_parent)
        self._notify(drive, 1)
        return item

    def delete_item(self, drive: Drive, item: Item) -> int:
        """Tombstone an item and its descendants; returns how many were deleted."""
        if item.id == drive.root_id:
            raise ValueError("cannot delete the root")
        victims = drive.subtree(item, lambda c: not c.deleted)
        # Only the top item leaves its parent; descendants keep their folders' counters
        # so that a restore of the whole group needs no recount.
        self._attach(drive, item, -1)
        drive.live -= len(victims) - 1
        now = self.clock.now()
        for v in victims:
            v.deleted = True
            v.deleted_by = item.id
            v.version += 1
            v.modified = now
        # Stamp children first so the folder's ancestors carry the newest sequence.
        for v in reversed(victims):
            self._touch(drive, v)
        self._notify(drive, len(victims))
        return len(victims)

    def restore_item(self, drive: Drive, item: Item) -> int:
        """Bring a tombstone back with what was deleted with it; returns how many came back.

        Like restoring from the recycle bin: the item is live again with a new eTag.  Its
        parent folder must be live (restore that first).
        """
        if not item.deleted:
            raise ValueError("item is not deleted")
        parent = drive.items.get(item.parent_id) if item.parent_id else None
        if parent is None or parent.deleted:
            raise LookupError("the parent folder is deleted: restore it first")
        group = drive.subtree(item, lambda c: c.deleted and c.deleted_by == item.id)
        now = self.clock.now()
        for r in group:
            r.deleted = False
            r.deleted_by = None
            r.version += 1
            r.modified = now
        drive.live += len(group) - 1
        self._attach(drive, item, 1)
        for r in group:
            self._touch(drive, r)
        self._notify(drive, len(group))
        return len(group)

    # ------------------------------------------------------------------ reads

    def render_source(self, drive: Drive, item_id: str) -> Item | None:
        """An item by id, tombstones included (delta reports deletions)."""
        return drive.items.get(item_id)
