"""Coalescing: whether a notification needs a delta run of its own (pure).

Graph sends several notifications for one change and bursts for many. A delta
run reads every change made before it started, so a notification received
before the start of a completed run is already covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

DEFAULT_MIN_INTERVAL = timedelta(seconds=1)
MAX_DEFER = timedelta(seconds=30)


class Action(Enum):
    """What to do with a notification."""

    SKIP = "skip"
    RUN = "run"
    DEFER = "defer"


@dataclass(frozen=True)
class CursorState:
    """What coalescing needs to know about a resource's delta cursor."""

    delta_link: str | None = None
    synced_from: datetime | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """The action, and for DEFER how long to wait before looking again."""

    action: Action
    delay: timedelta = timedelta(0)
    reason: str = ""


def decide(
    state: CursorState,
    received_at: datetime,
    now: datetime,
    deferrals: int = 0,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> Decision:
    """Decide whether a notification received at ``received_at`` needs a delta run now.

    - covered: the last completed run started after the notification arrived;
    - busy: another run holds the lease, so look again once it may have finished;
    - too soon: a run started less than ``min_interval`` ago, so wait for the rest
      of the burst and cover it with one run;
    - otherwise run.
    """
    if state.synced_from is not None and state.synced_from >= received_at:
        return Decision(Action.SKIP, reason="covered by a later run")
    # The exponent is capped before use: a large deferral count must not overflow.
    backoff = min(min_interval * (2 ** min(max(deferrals, 0), 16)), MAX_DEFER)
    if state.lease_until is not None and state.lease_until > now:
        return Decision(Action.DEFER, backoff, "another run holds the lease")
    if state.synced_from is not None and now - state.synced_from < min_interval:
        wait = state.synced_from + min_interval - now
        return Decision(Action.DEFER, max(wait, timedelta(milliseconds=50)), "run too recent")
    return Decision(Action.RUN, reason="not covered")
