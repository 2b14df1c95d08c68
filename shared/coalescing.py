"""Coalescing: whether a notification needs a delta run of its own (pure).

Graph sends several notifications for one change and bursts for many. A delta
pass reads every change made before it started, so a notification is covered by
a completed pass that started after it. "After" is judged on storage's clock (the
queue's insertion time against the table's timestamp of the write that started
the pass), and only by a margin: ``COVERAGE_MARGIN`` absorbs the whole-second
resolution of queue insertion times and the skew between storage's services, so
two instances whose clocks disagree can never skip a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

DEFAULT_MIN_INTERVAL = timedelta(seconds=1)
MAX_DEFER = timedelta(seconds=30)
# Queue insertion times have whole seconds (1 s), plus 1 s for skew between storage's services.
COVERAGE_MARGIN = timedelta(seconds=2)


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


class Action(Enum):
    """What to do with a notification."""

    SKIP = "skip"
    RUN = "run"
    DEFER = "defer"


@dataclass(frozen=True)
class Decision:
    """The action, and for DEFER how long to wait before looking again."""

    action: Action
    delay: timedelta = timedelta(0)
    reason: str = ""


def covers(synced_from: datetime | None, notified_at: datetime, margin: timedelta = COVERAGE_MARGIN) -> bool:
    """True when a pass that started at ``synced_from`` surely saw a change notified at ``notified_at``."""
    return synced_from is not None and synced_from >= notified_at + margin


def decide(
    state: CursorState,
    notified_at: datetime,
    now: datetime,
    deferrals: int = 0,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> Decision:
    """Decide whether a notification stored at ``notified_at`` needs a delta run now.

    - covered: the last completed pass started safely after the notification;
    - busy: another run holds the lease, so look again once it may have finished;
    - a pass in progress with no lease (crashed or handed on): resume it;
    - too soon: a pass started less than ``min_interval`` ago, so wait for the rest
      of the burst and cover it with one run;
    - otherwise run.
    """
    # The exponent is capped before use: a large deferral count must not overflow.
    backoff = min(min_interval * (2 ** min(max(deferrals, 0), 16)), MAX_DEFER)
    if state.lease_until is not None and state.lease_until > now:
        if covers(state.synced_from, notified_at):
            return Decision(Action.SKIP, reason="covered by a completed pass")
        return Decision(Action.DEFER, backoff, "another run holds the lease")
    if state.in_progress:
        return Decision(Action.RUN, reason="resume the pass in progress")
    if covers(state.synced_from, notified_at):
        return Decision(Action.SKIP, reason="covered by a completed pass")
    if state.synced_from is not None and now - state.synced_from < min_interval:
        # Capped: a clock behind storage's must not make the wait longer than the interval.
        wait = min(state.synced_from + min_interval - now, min_interval)
        return Decision(Action.DEFER, max(wait, timedelta(milliseconds=50)), "run too recent")
    return Decision(Action.RUN, reason="not covered")
