"""The all-folder message walk's saved state: one entry per mail folder (pure).

Each folder is an entry ``folder:{row}`` of the source's state (see
model/changes.py), whose value names the folder and the deltaLink its last
round ended at. The row is a hash of the folder id, which may hold characters a
RowKey forbids; entries come back in name order, which is the walk's order, so
the next folder is one read of the first entry after the current one, and a walk
needs no folder list in memory or in its cursor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from shared.model.changes import StateWrite

FOLDER = "folder:"


def folder_row(folder_id: str) -> str:
    """A folder id as an entry name: fixed length, no forbidden characters."""
    return FOLDER + hashlib.sha256(folder_id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Folder:
    """One folder of a walk: its entry name, Graph id, and the deltaLink its last round ended at."""

    row: str
    folder_id: str
    link: str | None = None

    def saved(self, link: str | None) -> StateWrite:
        """The state write that records ``link`` as where the folder's round ended."""
        return StateWrite(self.row, json.dumps({"id": self.folder_id, "link": link}, separators=(",", ":")))


def parse_folder(row: str, value: str) -> Folder:
    """A folder entry as saved by ``Folder.saved``; an unreadable one starts the folder afresh."""
    try:
        data = json.loads(value)
        return Folder(row, str(data["id"]), data.get("link") or None)
    except (ValueError, KeyError, TypeError):
        return Folder(row, "", None)
