"""When a sink tries an event again, and when it gives up: pure decisions, ``now`` passed in.

An outage is waited out, a refusal is not. A failed delivery (timeout, connection error,
5xx, 429, storage trouble…) is tried again after a doubling delay (2 s, 4 s, 8 s, …
up to an hour between tries, never sooner than the destination's ``Retry-After``) until
the *horizon* has passed since its first failure: 24 hours by default, as the webhook
services users know (Svix retries for about 27 hours, Standard Webhooks recommends a
schedule of days). The last try is made at the horizon; only a failure then poisons.

A later event of an item waits while an earlier one is retried (per-item order, see
ordering.py). It looks again after a doubling wait (1 s, 2 s, … up to 5 minutes), for
the same horizon plus an hour, so the earlier event always gives up (is poisoned, which
releases the item) before a later one would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

DEFAULT_HORIZON_HOURS = 24.0
MAX_HORIZON_HOURS = 7 * 24.0
# The longest wait between two tries; a recovered destination gets its events within it.
MAX_DELAY = 3600.0
# A waiting event looks again at least this often, so it follows soon after the earlier one.
MAX_WAIT = 300.0
# A waiting event outlasts the earlier event's horizon by this much (it may have started
# waiting before the earlier event first failed: an attempt takes up to a few timeouts).
WAIT_MARGIN = timedelta(hours=1)
# Storage queues refuse a visibility delay longer than 7 days.
MAX_VISIBILITY = 7 * 24 * 3600.0
_MAX_DOUBLINGS = 40  # 2**40 s is far past any cap; keeps the float in range


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often one sink retries."""

    horizon: timedelta = timedelta(hours=DEFAULT_HORIZON_HOURS)
    base: float = 2.0
    max_delay: float = MAX_DELAY
    max_attempts: int | None = None  # an optional cap on deliveries, on top of the horizon
    wait_base: float = 1.0
    max_wait: float = MAX_WAIT

    def scaled(self, tempo: float) -> RetryPolicy:
        """The same horizon with every real wait multiplied by ``tempo`` (tests play hours in seconds)."""
        return replace(
            self,
            base=self.base * tempo,
            max_delay=self.max_delay * tempo,
            wait_base=self.wait_base * tempo,
            max_wait=self.max_wait * tempo,
        )

    def retry_delay(self, retries: int, since: datetime, now: datetime, retry_after: float | None) -> float | None:
        """Seconds until try ``retries + 2`` after a failure, or None: give up (poison).

        ``retries`` is how many tries failed before this one; ``since`` the first failure.
        """
        deadline = since + self.horizon
        if now >= deadline:
            return None
        if self.max_attempts is not None and retries + 1 >= self.max_attempts:
            return None
        delay = min(self.base * 2.0 ** min(retries, _MAX_DOUBLINGS), self.max_delay)
        delay = max(delay, retry_after or 0.0)
        return _until(deadline, now, delay)

    def wait_delay(self, waits: int, since: datetime, now: datetime, hint: float) -> float | None:
        """Seconds before a waiting event looks again, or None: it waited too long (poison)."""
        deadline = since + self.horizon + WAIT_MARGIN
        if now >= deadline:
            return None
        delay = min(max(self.wait_base * 2.0 ** min(waits, _MAX_DOUBLINGS), hint), self.max_wait)
        return _until(deadline, now, delay)


def _until(deadline: datetime, now: datetime, delay: float) -> float:
    """``delay``, shortened so the next look is at the deadline at the latest."""
    return max(0.0, min(delay, (deadline - now).total_seconds(), MAX_VISIBILITY))
