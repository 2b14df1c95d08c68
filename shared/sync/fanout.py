"""The fan-out point: every change event goes to graph-changes, then to each sink's queue.

graph-changes is written first and never waits on a sink: a sink queue write that
fails fails the page, which is retried with the same event ids (at least once).
With EVENT_FORMAT=cloudevents each native event is sent as a structured CloudEvent
(model/event_formats.py), the same text on every queue and tap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from shared.model.event_formats import NATIVE, fit_structured, native_event
from shared.queues.message_queue import MessageQueue


class Copier(Protocol):
    """An extra, best-effort destination (the taps of ``graphhooks events tail``): never raises."""

    async def send_all(self, texts: Sequence[str]) -> None: ...


class EventFanout:
    """The changes queue plus the sinks' queues, behind MessageQueue's ``send_all``."""

    def __init__(
        self,
        changes: MessageQueue,
        sinks: Sequence[MessageQueue] = (),
        taps: Copier | None = None,
        tenants: Mapping[str, frozenset[str]] | None = None,
        event_format: str = NATIVE,
    ) -> None:
        self._changes = changes
        self._sinks = tuple(sinks)
        self._taps = taps
        # A sink queue's name -> the only tenants whose events it receives (SINKS "tenants"); absent: every tenant's.
        self._tenants = dict(tenants or {})
        self._native = event_format == NATIVE

    @property
    def name(self) -> str:
        """The contract queue's name."""
        return self._changes.name

    async def send(self, text: str, delay_seconds: float = 0) -> None:
        """One message, to every queue."""
        await self.send_all([text])

    async def send_all(self, texts: Iterable[str]) -> None:
        """Store the messages on graph-changes, then on every sink queue."""
        batch = list(texts) if self._native else [fit_structured(text) for text in texts]
        await self._changes.send_all(batch)
        if self._sinks and batch:
            await asyncio.gather(*(sink.send_all(self._for(sink, batch)) for sink in self._sinks))
        if self._taps is not None and batch:
            await self._taps.send_all(batch)

    def _for(self, sink: MessageQueue, batch: list[str]) -> list[str]:
        wanted = self._tenants.get(sink.name)
        if wanted is None:
            return batch
        return [text for text in batch if _tenant_of(text) in wanted]


def _tenant_of(text: str) -> str:
    """The event's tenantId, in either form ('' when it has none)."""
    value = native_event(json.loads(text)).get("tenantId")
    return value if isinstance(value, str) else ""
