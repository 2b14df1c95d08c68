"""Per-item delivery order for a sink, kept in Table storage.

A queue does not keep order, and a failed delivery waits for its retry while later
messages flow. So before sending an event, a sink claims its item's row: the row
names the event in flight (``pendingId``, ``pendingAt``: its ``observedAt``). An
event that finds an *earlier* event of the same item in flight is deferred, so a
``deleted`` never overtakes the ``created`` it follows, even while that one is
being retried. Claims are ETag-conditional, so two instances cannot both claim.
Delivery clears the claim; poisoning clears it too (the item moves on; a replay
from the poison queue is delivered as it comes). The events' ``observedAt`` is the
sequence: one subscription's delta runs are serialised by the cursor lease, and an
item has at most one event per page, so later runs observe later changes.
What this cannot order: an earlier event that was never dequeued before a later
one was delivered (the later one is written at least a delta run afterwards).
With TENANT_MODE=multi the rows are keyed by tenant, and a removed tenant's are forgotten.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from shared.errors import DeliveryDeferredError
from shared.model.names import SINK_ORDER_TABLE
from shared.model.resources import resource_key
from shared.model.tenant import scope_prefix, scoped_key
from shared.stores.tables import ensure_table, prefix_filter, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

ORDER_TABLE = SINK_ORDER_TABLE


def item_key(event: dict[str, Any], by_tenant: bool = False) -> str | None:
    """The row key of the event's item (within its tenant, ``by_tenant``); None if it is not an item's event."""
    item_id = event.get("itemId")
    if not isinstance(item_id, str) or not item_id:
        return None
    key = resource_key(f"{event.get('containerId', '')}|{item_id}")
    return scoped_key(str(event.get("tenantId") or ""), key) if by_tenant else key


class OrderBook:
    """Claims and releases items for one sink (the partition is the sink's queue)."""

    def __init__(self, client: TableClient, sink: str, wait: float = 1.0, by_tenant: bool = False) -> None:
        self._client = client
        self._sink = sink
        self._wait = wait
        self._by_tenant = by_tenant  # TENANT_MODE=multi: rows keyed by the event's tenant

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def claim(self, event: dict[str, Any]) -> str | None:
        """Mark the event in flight for its item and return the row's ETag (for ``release``).

        Raise DeliveryDeferredError behind an earlier event. An item seen for the first
        time costs one write; a known one a read and a conditional write.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        key = item_key(event, self._by_tenant)
        if key is None:
            return None
        at = str(event.get("observedAt", ""))
        entity = {"PartitionKey": self._sink, "RowKey": key, "pendingId": str(event.get("id", "")), "pendingAt": at}
        row: Any = None
        for attempt in range(6):
            try:
                if attempt == 0:
                    written = await self._client.create_entity(entity)
                else:
                    try:
                        row = await self._client.get_entity(self._sink, key)
                    except ResourceNotFoundError:
                        written = await self._client.create_entity(entity)
                        return str(written.get("etag"))
                    pending = row.get("pendingId") or ""
                    if pending and pending != event.get("id") and str(row.get("pendingAt", "")) < at:
                        raise DeliveryDeferredError(f"item {key} has an earlier event in flight", self._wait)
                    written = await self._client.update_entity(
                        entity, etag=row.metadata["etag"], match_condition=MatchConditions.IfNotModified
                    )
                return str(written.get("etag"))
            except (ResourceExistsError, ResourceModifiedError):
                continue  # the row exists, or another instance claimed meanwhile: look (again)
        raise DeliveryDeferredError(f"item {key} is contended", self._wait)

    async def release(self, event: dict[str, Any], etag: str | None = None) -> None:
        """Clear the claim if it is still this event's (delivered, or poisoned).

        With the ETag ``claim`` returned this is one conditional write; without, a read first.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        key = item_key(event, self._by_tenant)
        if key is None:
            return
        if etag is None:
            try:
                row = await self._client.get_entity(self._sink, key)
            except ResourceNotFoundError:
                return
            if row.get("pendingId") != event.get("id"):
                return
            etag = str(row.metadata["etag"])
        entity = {"PartitionKey": self._sink, "RowKey": key, "pendingId": "", "pendingAt": ""}
        # A failed condition means a later event claimed the item: no longer ours to clear.
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            await self._client.update_entity(entity, etag=etag, match_condition=MatchConditions.IfNotModified)

    async def forget(self, tenant: str) -> None:
        """Delete a removed tenant's rows (TENANT_MODE=multi); each can go again after a crash."""
        from azure.core.exceptions import ResourceNotFoundError

        if not self._by_tenant or not tenant:
            return
        query = f"PartitionKey eq {quote_filter(self._sink)} and {prefix_filter('RowKey', scope_prefix(tenant))}"
        async for row in self._client.query_entities(query, select=["PartitionKey", "RowKey"]):
            with contextlib.suppress(ResourceNotFoundError):
                await self._client.delete_entity(row["PartitionKey"], row["RowKey"])
