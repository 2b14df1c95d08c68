"""Teams channel summaries: one Adaptive Card per subscription and window, not one per change.

Each event adds a row to its subscription's open window in Table storage (the row
key holds the event id, so a replay adds nothing). The event that opens a window
also enqueues a flush message, invisible for the window's length; the flush posts
one card (counts by change type, a few item names, the resource) to the Workflows
URL, then deletes the window's rows. A flush that fails is retried by the runner
(honouring 429's Retry-After) and poisoned after the sink's maxAttempts; rows of a
window that was already posted are gone, so a replayed flush posts nothing.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.clock import format_time, parse_time, utcnow
from shared.errors import DeliveryRetryError
from shared.model.names import SINK_BATCHES_TABLE
from shared.model.resources import resource_key
from shared.model.sinks import TeamsSink
from shared.queues.message_queue import MessageQueue
from shared.sinks.webhook import classify, post_with_retries
from shared.stores.tables import ensure_table, quote_filter

if TYPE_CHECKING:
    import aiohttp
    from azure.data.tables.aio import TableClient

BATCH_TABLE = SINK_BATCHES_TABLE
OPEN = "open"
SAMPLES = 5
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def card(resource: str, counts: dict[str, int], names: Sequence[str]) -> dict[str, Any]:
    """A Workflows message holding one Adaptive Card that summarises a window."""
    total = sum(counts.values())
    facts = [{"title": change, "value": str(count)} for change, count in sorted(counts.items())]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": f"{total} change{'s' if total != 1 else ''}", "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": resource, "isSubtle": True, "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    if names:
        more = total - len(names)
        listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
        body.append({"type": "TextBlock", "text": listed, "wrap": True})
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {"type": "message", "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": content}]}


class TeamsSummary:
    """Batches events per subscription and posts one card per window."""

    def __init__(
        self,
        config: TeamsSink,
        table: TableClient,
        queue: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._config = config
        self._table = table
        self._queue = queue
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._open: dict[str, tuple[str, datetime]] = {}  # this instance's view: partition -> (window, end)

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._table)

    def _partition(self, subscription_id: str) -> str:
        return resource_key(f"{self._config.delivery.queue}|{subscription_id}")

    async def deliver(self, messages: Sequence[dict[str, Any]]) -> None:
        """Add events to their windows; post the cards of flush messages."""
        for message in messages:
            flush = message.get("sinkFlush")
            if isinstance(flush, dict):
                await self._flush(flush)
            else:
                await self._add(message)

    async def abandon(self, messages: Sequence[dict[str, Any]]) -> None:
        """Nothing is held: a poisoned flush keeps its rows, and replaying it posts them."""

    async def _add(self, event: dict[str, Any]) -> None:
        subscription = str(event.get("subscriptionId", ""))
        partition = self._partition(subscription)
        window = await self._window(partition, subscription, str(event.get("resource", "")))
        item = event.get("item") if isinstance(event.get("item"), dict) else None
        name = str((item or {}).get("name") or event.get("itemId", ""))
        row = {
            "PartitionKey": partition,
            "RowKey": f"{window}|{event.get('id', '')}",
            "changeType": str(event.get("changeType", "")),
            "name": name[:200],
        }
        await self._table.upsert_entity(row)

    async def _window(self, partition: str, subscription: str, resource: str) -> str:
        """The open window's id, opening one (and scheduling its flush) if none is open."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        known = self._open.get(partition)
        if known is not None and known[1] > self._clock():
            return known[0]  # saves a read per event during a burst
        for _ in range(10):
            now = self._clock()
            try:
                marker = await self._table.get_entity(partition, OPEN)
            except ResourceNotFoundError:
                marker = None
            if marker is not None and parse_time(str(marker["endsAt"])) > now:
                self._open[partition] = (str(marker["window"]), parse_time(str(marker["endsAt"])))
                return str(marker["window"])
            window = f"{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
            ends = now + timedelta(seconds=self._config.window_seconds)
            entity = {"PartitionKey": partition, "RowKey": OPEN, "window": window, "endsAt": format_time(ends)}
            try:
                if marker is None:
                    await self._table.create_entity(entity)
                else:
                    await self._table.update_entity(
                        entity, etag=marker.metadata["etag"], match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another event opened it first
            flush = {"sinkFlush": {"subscriptionId": subscription, "window": window, "resource": resource}}
            await self._queue.send(json.dumps(flush), delay_seconds=self._config.window_seconds)
            self._open[partition] = (window, ends)
            return window
        raise DeliveryRetryError("the window row is contended")

    async def _flush(self, flush: dict[str, Any]) -> None:
        partition = self._partition(str(flush.get("subscriptionId", "")))
        window = str(flush.get("window", ""))
        query = f"PartitionKey eq {quote_filter(partition)} and RowKey gt {quote_filter(window + '|')}"
        query += f" and RowKey lt {quote_filter(window + '|~')}"
        rows = [row async for row in self._table.query_entities(query, select=["RowKey", "changeType", "name"])]
        if not rows:
            return  # already posted: a replay posts nothing
        counts = Counter(str(row.get("changeType", "")) for row in rows)
        names = sorted({str(row.get("name", "")) for row in rows if row.get("name")})[:SAMPLES]
        message = card(str(flush.get("resource", "")), dict(counts), names)
        await post_with_retries(lambda: self._post(message))
        await self._delete(partition, [str(row["RowKey"]) for row in rows])

    async def _post(self, message: dict[str, Any]) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.post(self._config.url, json=message) as response:
                await response.read()
                classify(response.status, response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryRetryError(f"{type(exc).__name__} posting to Teams") from exc

    async def _delete(self, partition: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 100):  # a transaction holds at most 100 operations
            batch = [("delete", {"PartitionKey": partition, "RowKey": key}) for key in keys[start : start + 100]]
            await self._table.submit_transaction(batch)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
