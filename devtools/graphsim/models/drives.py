"""Drives and driveItems: ids shaped like OneDrive for Business's, the items, and the drive's tree.

Deleted items stay as tombstones so ``delta`` can report them (and so a restore can bring
them back). ``Drive.items`` is kept in sequence order (a stamped item moves to the end), so a
delta run finds the items changed since a token by walking back from the end; a children
index replaces scans of the whole drive. Generated files keep a size instead of content
bytes; their content hash is derived from the id. What changes a drive: drive_store.py.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_item_id() -> str:
    """An id shaped like OneDrive for Business item ids (``01`` + 32 base32 characters)."""
    return "01" + "".join(secrets.choice(_B32) for _ in range(32))


def new_item_ids(count: int) -> list[str]:
    """``count`` item ids at once: 20 random bytes are exactly 32 base32 characters."""
    text = base64.b32encode(secrets.token_bytes(20 * count)).decode()
    return ["01" + text[i : i + 32] for i in range(0, 32 * count, 32)]


def new_drive_id() -> str:
    """An id shaped like a SharePoint drive id (``b!`` + 64 url-safe characters)."""
    return "b!" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()


@dataclass(slots=True)
class Item:
    """One driveItem, live or tombstoned (slots: a million of them must stay small)."""

    id: str
    name: str
    parent_id: str | None
    is_folder: bool
    created: datetime
    modified: datetime
    content: bytes = b""
    version: int = 1  # bumps on every change: the eTag
    content_version: int = 1  # bumps on content changes: the cTag
    seq: int = 0  # the drive's change sequence when last touched
    deleted: bool = False
    size: int = 0  # a file's bytes; a folder's total of its live content
    child_count: int = 0  # a folder's live children
    synthetic: bool = False  # generated: ``size`` bytes derived from the id, none stored
    deleted_by: str | None = None  # the item whose deletion took this one (restored together)

    @property
    def guid(self) -> str:
        """The eTag's GUID, derived from the id so that none has to be stored."""
        return str(uuid.UUID(bytes=hashlib.blake2b(self.id.encode(), digest_size=16).digest())).upper()

    def data(self) -> bytes:
        """The file's content; for a generated file, deterministic bytes made from its id."""
        if not self.synthetic:
            return self.content
        block = hashlib.sha256(self.id.encode()).digest()
        return (block * (self.size // len(block) + 1))[: self.size]


def item_hash(item: Item) -> str:
    """The content hash; a generated file's is derived from its id without building content."""
    if item.synthetic:
        return content_hash(f"{item.id}:{item.size}".encode())
    return content_hash(item.content)


@dataclass
class Drive:
    """A document library or OneDrive for Business drive."""

    id: str
    user_id: str | None
    site_id: str | None
    root_id: str
    created: datetime
    items: dict[str, Item] = field(default_factory=dict)  # in sequence order
    children: dict[str, list[str]] = field(default_factory=dict)  # folder -> children, tombstones too
    live: int = 1  # live items, the root included
    seq: int = 0
    token_epoch: int = 0  # bumped by expire-tokens: older delta tokens answer 410
    delta_runs: int = 0
    delta_requests: int = 0
    change_times: deque[tuple[int, float]] = field(default_factory=deque)  # (seq, time) while lagging
    full_order: tuple[int, list[str]] | None = None  # (seq, ids) of the last full enumeration

    def live_item(self, item_id: str) -> Item | None:
        """A live item by id; ``root`` names the root folder."""
        it = self.items.get(self.root_id if item_id == "root" else item_id)
        return None if it is None or it.deleted else it

    def ancestors(self, parent_id: str | None) -> Iterator[Item]:
        """The folders from ``parent_id`` up to the root."""
        while parent_id is not None:
            parent = self.items.get(parent_id)
            if parent is None:
                return
            yield parent
            parent_id = parent.parent_id

    def subtree(self, item: Item, keep: Callable[[Item], bool]) -> list[Item]:
        """``item`` and the descendants ``keep`` accepts (a rejected one hides its subtree)."""
        found, stack = [item], [item.id]
        while stack:
            for cid in self.children.get(stack.pop(), ()):
                child = self.items[cid]
                if keep(child):
                    found.append(child)
                    if child.is_folder:
                        stack.append(cid)
        return found

    def is_under(self, item: Item, ancestor_id: str) -> bool:
        """Whether ``ancestor_id`` is one of the folders above ``item``."""
        return any(parent.id == ancestor_id for parent in self.ancestors(item.parent_id))

    def path_of(self, item: Item) -> str:
        """``/drive/root:`` style path of an item's folder."""
        names = [p.name for p in self.ancestors(item.parent_id) if p.id != self.root_id]
        return "/drive/root:" + "".join("/" + n for n in reversed(names))


def content_hash(data: bytes) -> str:
    """quickXorHash stand-in: base64 SHA-1 (clients treat it as opaque)."""
    return base64.b64encode(hashlib.sha1(data).digest()).decode()
