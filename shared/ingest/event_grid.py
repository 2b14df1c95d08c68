"""The Event Grid channel: each Graph event Event Grid delivers goes through the webhook path's checks and queue.

Event Grid retries a delivery the function fails, for up to 24 hours, then dead-letters it
(learn azure/event-grid/delivery-and-retry). So an event whose notification was not stored
raises NotStoredError, and one that is refused (unknown subscription, wrong clientState, a
validation token that fails, data that is no notification) is counted by reason and
acknowledged: redelivering it would be refused again, as Graph's webhooks get a 202 for it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared import refusals
from shared.errors import EventGridEventError, NotStoredError
from shared.ingest.receiver import Ingest
from shared.model.event_grid import notification_of

log = logging.getLogger(__name__)
CHANNEL = "eventGrid"


def batch_of(item: dict[str, Any]) -> bytes:
    """The webhook batch one event's notification stands for: its validation tokens at the batch's level."""
    tokens = item.pop("validationTokens", None)
    batch: dict[str, Any] = {"value": [item]}
    if tokens is not None:
        batch["validationTokens"] = tokens
    return json.dumps(batch, separators=(",", ":")).encode()


class EventGridIngest:
    """Stores the notification of one Event Grid event, or raises so Event Grid redelivers it."""

    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    async def accept(self, event_type: str, data: object) -> None:
        """Check and store one event's notification (a change, or a lifecycle event by its ``lifecycleEvent``)."""
        try:
            item = notification_of(event_type, data)
        except EventGridEventError as exc:
            log.warning("%s: refused an event of type %.80s: %s", CHANNEL, event_type, exc)
            refusals.count(refusals.Reason.MALFORMED, source=CHANNEL)
            return
        lifecycle = bool(item.get("lifecycleEvent"))
        reply = await self._ingest.accept(batch_of(item), lifecycle=lifecycle, channel=CHANNEL)
        if reply.status >= 500:
            raise NotStoredError(f"not stored ({reply.status} {reply.body}): Event Grid redelivers it")
