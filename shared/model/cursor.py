"""A resource's delta cursor: the last completed pass, and the pass in progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Mode(Enum):
    """The kind of delta pass in progress."""

    DELTA = "delta"  # changes since the last completed pass
    FULL = "full"  # INITIAL_SYNC=full: every item is news
    BASELINE = "baseline"  # a new subscription: index every item, report only changes after ``since``
    RESYNC = "resync"  # after 410: report what changed after ``since``, and deletions

    @property
    def enumerates(self) -> bool:
        """True when the pass lists every live item, so unlisted known items were deleted."""
        return self is not Mode.DELTA


@dataclass(frozen=True)
class CursorState:
    """A resource's delta cursor: the last completed pass, and the pass in progress, if any.

    ``synced_from`` is storage's time of the write that started the last completed
    pass. While a pass is in progress, ``mode`` is set, ``next_link`` is the page to
    read next (None: the first page of a full enumeration), and ``final_link`` is
    set once an enumerating pass has read its last page and is reporting deletions.
    """

    delta_link: str | None = None
    synced_from: datetime | None = None
    lease_until: datetime | None = None
    mode: Mode | None = None
    next_link: str | None = None
    final_link: str | None = None
    pass_id: str = ""
    pass_started: datetime | None = None
    since: datetime | None = None
    pages: int = 0
    container_id: str = ""

    @property
    def in_progress(self) -> bool:
        """True while a pass has begun and not completed."""
        return self.mode is not None


@dataclass(frozen=True)
class StoredCursor:
    """A cursor's state, the ETag to make the next write conditional on, and storage's times.

    ``written_at`` is storage's precise time of the write that produced this value;
    ``read_at`` is storage's time of the read (the response's Date: whole seconds).
    """

    key: str
    state: CursorState
    etag: str | None
    written_at: datetime | None = None
    read_at: datetime | None = None

    @property
    def exists(self) -> bool:
        """False when no cursor was ever saved for this key."""
        return self.etag is not None
