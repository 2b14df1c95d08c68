"""One waiting message per subscription: a notification put off while one already waits rides on it.

A tenant that throttles has each of its notifications put off (re-queued with a delay).
Over a long storm each would come back again and again, a receive, a send and a delete
each time, on the storage account and the instance the other tenants share. Instead, a
notification that asks only for a delta pass joins the message its subscription already
has waiting, sent by this instance: storage updates that message, moving its time forward
to the joiner's (and its count of deferrals to the joiner's), and the joiner's own
message is deleted.

Why that loses nothing: storage updates a message only with the pop receipt it was last
given, so an update succeeds only while nobody has received the message since. Its run,
and the pass that run starts, then lie after the joiner was stored; a pass that starts
after a notification was stored covers it (sync/coalescing.py). With its time moved
forward, the waiting message is not skipped for a pass that began before the joiner. If
the update fails, the notification is put off on its own message, as before, and that
one waits for the next joiners.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.model.notifications import Envelope
from shared.queues.message_queue import MessageQueue, Receipt

# A joiner pulls the waiting message in to this, at the latest, so a long backoff never holds back a recent
# change by more than about a minute once the throttling ends.
JOIN_HORIZON_SECONDS = 60.0
# A message due sooner than this may be received while the update is on its way: not worth joining.
MIN_LEAD_SECONDS = 1.0
# Subscriptions remembered per instance; the oldest is forgotten first (it is then only not joined).
MAX_WAITING = 4_096


@dataclass
class _Waiting:
    receipt: Receipt
    envelope: Envelope
    due: float  # monotonic time the message becomes visible
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WaitingMessages:
    """The messages this instance put off, one per subscription key, that later ones can join."""

    def __init__(
        self,
        queue: MessageQueue,
        monotonic: Callable[[], float] = time.monotonic,
        limit: int = MAX_WAITING,
        horizon: float = JOIN_HORIZON_SECONDS,
    ) -> None:
        self._queue = queue
        self._horizon = horizon
        self._monotonic = monotonic
        self._limit = limit
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    async def put_off(self, key: str, envelope: Envelope, delay_seconds: float) -> bool:
        """Put ``envelope`` off by ``delay_seconds``; True if it joined ``key``'s waiting message.

        ``envelope`` must ask only for a delta pass (no lifecycle event, no resource data):
        what a joiner carries beyond its time is dropped. Raises StorageUnavailableError
        when storage fails; the caller's message is then retried, and nothing was lost.
        """
        if await self._join(key, envelope, delay_seconds):
            return True
        receipt = await self._queue.send(envelope.to_json(), delay_seconds=delay_seconds)
        if isinstance(receipt, Receipt):
            self._remember(key, _Waiting(receipt, envelope, self._monotonic() + delay_seconds))
        return False

    async def _join(self, key: str, envelope: Envelope, delay_seconds: float) -> bool:
        waiting = self._waiting.get(key)
        if waiting is None:
            return False
        async with waiting.lock:
            if self._waiting.get(key) is not waiting:
                return False  # replaced or forgotten while this one waited for the lock
            left = waiting.due - self._monotonic()
            if left < MIN_LEAD_SECONDS:
                del self._waiting[key]
                return False
            delay = min(left, max(delay_seconds, self._horizon))
            # It takes on the joiner's time and its count of deferrals: put off again while the throttling lasts,
            # it comes back as soon as the joiner would have, not after the longer backoff its own count has earned.
            joined = replace(
                waiting.envelope,
                notified_at=_latest(waiting.envelope, envelope),
                deferrals=min(waiting.envelope.deferrals, envelope.deferrals),
            )
            try:
                receipt = await self._queue.update(waiting.receipt, joined.to_json(), delay)
            except Exception:
                del self._waiting[key]  # whether storage took it is unknown: the next one starts afresh
                raise
            if receipt is None:
                del self._waiting[key]
                return False
            waiting.receipt, waiting.envelope, waiting.due = receipt, joined, self._monotonic() + delay
            return True

    def _remember(self, key: str, waiting: _Waiting) -> None:
        self._waiting[key] = waiting
        self._waiting.move_to_end(key)
        now = self._monotonic()
        while self._waiting and (len(self._waiting) > self._limit or next(iter(self._waiting.values())).due < now):
            self._waiting.popitem(last=False)  # the oldest, or one already due: joining it is no longer safe


def _latest(waiting: Envelope, joiner: Envelope) -> datetime:
    """The later of the two envelopes' notification times (the time a covering pass must start after)."""
    return max(waiting.notified_at or waiting.received_at, joiner.notified_at or joiner.received_at)
