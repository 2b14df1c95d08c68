"""Group commit for the HTTP path: concurrent requests share queue writes.

Each request still answers 202 only once a queue write that carries its items
has succeeded; a failed write fails every request it carried (503). While one
write is in flight, the requests that arrive meanwhile wait and go together in
the next one, so under load there is less than one write per request, and at
rest exactly one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .notifications import Envelope, split_envelope
from .queues import MessageQueue


@dataclass
class _Waiting:
    envelope: Envelope
    done: asyncio.Future[None]


class GroupWriter:
    """Stores envelopes of one source, merging those that wait for the same write."""

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, envelope: Envelope) -> None:
        """Return once the envelope's items are stored; raise what the write raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A request that timed out no longer reads its outcome; retrieve it so none goes unseen.
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        self._waiting.append(_Waiting(envelope, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a request that gives up must not cancel a write that carries others.
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                for text in split_envelope(_merge(group)):
                    await self._queue.send(text)
            except Exception as exc:  # noqa: BLE001 - handed to every request it carried
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
            else:
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_result(None)


def _merge(group: list[_Waiting]) -> Envelope:
    first = group[0].envelope
    # The earliest receipt keeps coalescing conservative: no item looks newer than it is.
    received_at = min(w.envelope.received_at for w in group)
    items = [item for w in group for item in w.envelope.items]
    return Envelope(first.source, received_at, items, first.deferrals)
