"""The item index's records: what the app has reported of one item."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    """What the index holds for one item: its last reported version, whether it is deleted, and its life.

    ``life`` counts the item's restores (and changes told by ``detail`` alone): an item
    deleted and restored lives again under the same id and may come back at the same
    version (a directory object's version is a hash of its properties), so events tell
    its lives apart by it. ``detail`` is what the last delta round reported beside the
    version (see SourceChange.detail).
    """

    version: str
    deleted: bool = False
    life: int = 0
    detail: str = ""


@dataclass(frozen=True)
class IndexWrite:
    """One row to write: the item's version and state, and the pass that saw it ('' for none)."""

    item_id: str
    version: str
    deleted: bool = False
    pass_id: str = ""
    life: int = 0
    detail: str = ""
