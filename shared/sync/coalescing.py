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

from shared.model.cursor import CursorState

DEFAULT_MIN_INTERVAL = timedelta(seconds=1)
MAX_DEFER = timedelta(seconds=30)
# Queue insertion times have whole seconds (1 s), plus 1 s for skew between storage's services.
COVERAGE_MARGIN = timedelta(seconds=2)


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


def _busy(state: CursorState, deferrals: int, min_interval: timedelta) -> Decision:
    """Wait for the run holding the lease."""
    if state.in_progress and state.pages:
        # A pass spanning invocations hands itself on; looking again every second or two
        # only multiplies queue traffic while it runs, so wait the longest at once.
        return Decision(Action.DEFER, MAX_DEFER, "a pass is in progress under a lease")
    # The exponent is capped before use: a large deferral count must not overflow.
    backoff = min(min_interval * (2 ** min(max(deferrals, 0), 16)), MAX_DEFER)
    return Decision(Action.DEFER, backoff, "another run holds the lease")


def decide_notified(
    state: CursorState, now: datetime, deferrals: int = 0, min_interval: timedelta = DEFAULT_MIN_INTERVAL
) -> Decision:
    """Whether changes told by notifications (resource data) can be committed now.

    They are committed under the resource's lease, as a page is: RUN when it is free,
    else DEFER until the run holding it may have finished. Nothing is ever skipped:
    only the notification knows its change.
    """
    if state.lease_until is not None and state.lease_until > now:
        return _busy(state, deferrals, min_interval)
    return Decision(Action.RUN, reason="lease free")


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
    if state.lease_until is not None and state.lease_until > now:
        if covers(state.synced_from, notified_at):
            return Decision(Action.SKIP, reason="covered by a completed pass")
        return _busy(state, deferrals, min_interval)
    if state.in_progress:
        return Decision(Action.RUN, reason="resume the pass in progress")
    if covers(state.synced_from, notified_at):
        return Decision(Action.SKIP, reason="covered by a completed pass")
    if state.synced_from is not None and now - state.synced_from < min_interval:
        # Capped: a clock behind storage's must not make the wait longer than the interval.
        wait = min(state.synced_from + min_interval - now, min_interval)
        return Decision(Action.DEFER, max(wait, timedelta(milliseconds=50)), "run too recent")
    return Decision(Action.RUN, reason="not covered")
