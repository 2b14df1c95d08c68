"""Group commit for the HTTP path: concurrent requests share queue writes.

Each request still answers 202 only once a queue write that carries its items
has succeeded; a failed write fails every request it carried (503). While one
write is in flight, the requests that arrive meanwhile wait and go together in
the next one, so under load there is less than one write per request, and at
rest exactly one.

Each request's items are encoded before it joins a group, in the request
itself: an item that cannot be stored fails that request only, never a write
that carries others. So is an item too large for a queue message written to a
blob (see queues/claims.py), the group carrying its claim: a blob that cannot be written
fails only its own request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.errors import BodyTooLargeError
from shared.model.notifications import Envelope, encode_item, item_room, pack_items
from shared.queues.message_queue import MessageQueue


@dataclass
class _Waiting:
    envelope: Envelope
    encoded: list[bytes]
    done: asyncio.Future[None]


class GroupCommit:
    """Stores envelopes of one source, merging those that wait for the same write."""

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, envelope: Envelope) -> None:
        """Return once the envelope's items are stored; raise what the write raised.

        Raise, before joining any write: MalformedBodyError for an item that has no
        UTF-8 JSON form; for an item that fits no queue message, BodyTooLargeError
        when the queue has no claim store, StorageUnavailableError when its blob
        cannot be written.
        """
        encoded = [encode_item(item) for item in envelope.items]
        room = item_room(envelope)
        if any(len(item) > room for item in encoded):
            encoded = await self._check_in(envelope, encoded, room)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A request that timed out no longer reads its outcome; retrieve it so none goes unseen.
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        self._waiting.append(_Waiting(envelope, encoded, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a request that gives up must not cancel a write that carries others.
        await asyncio.shield(done)

    async def _check_in(self, envelope: Envelope, encoded: list[bytes], room: int) -> list[bytes]:
        """``encoded`` with each item over ``room`` bytes written to a blob and replaced by its claim."""
        claims = self._queue.claims
        if claims is None:
            raise BodyTooLargeError("one notification exceeds the queue message limit")
        large = [index for index, item in enumerate(encoded) if len(item) > room]
        owner = [str(item.get("subscriptionId", "")) for item in envelope.items]
        # At most 21 (a body holds 1 MiB): written at once, within the request's deadline.
        stubs = await asyncio.gather(
            *(claims.check_in(owner[index], encoded[index], envelope.received_at) for index in large)
        )
        checked = list(encoded)
        for index, stub in zip(large, stubs, strict=True):
            checked[index] = encode_item(stub)
        return checked

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                for text in pack_items(_header(group), [item for w in group for item in w.encoded]):
                    await self._queue.send(text)
            except Exception as exc:  # noqa: BLE001 - handed to every request it carried
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
            else:
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_result(None)


def _header(group: list[_Waiting]) -> Envelope:
    """The merged envelope's fields; its items travel already encoded."""
    first = group[0].envelope
    # The earliest receipt keeps coalescing conservative: no item looks newer than it is.
    received_at = min(w.envelope.received_at for w in group)
    # A shared write continues the first request's trace (a message has one parent).
    return Envelope(first.source, received_at, [], first.deferrals, first.traceparent)
