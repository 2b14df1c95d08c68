"""A blob mirror's removed tenants: when each was removed, and deleting what the mirror kept of one.

A ``tenant.removed`` event deletes the tenant's blobs (``deleted/`` copies too), its rows
and its order rows. The removal is recorded first, one row per removed tenant (its id and
when), so that an event of the tenant observed before then, retried late or replayed from
the poison queue, is dropped instead of writing a blob back. Every step can be repeated:
a crash midway is finished when the event is retried.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.clock import parse_time
from shared.model.resources import resource_key
from shared.model.tenant import scoped_key
from shared.sinks.blobnames import DELETED_PREFIX, checked_blob, tenant_root
from shared.stores.tables import prefix_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient
    from azure.storage.blob.aio import ContainerClient

    from shared.sinks.ordering import OrderBook

# How long an instance trusts what it read of a tenant's removal (one point read per tenant and minute).
REMOVAL_CACHE_SECONDS = 60.0


def tenant_rows(sink: str, tenant: str) -> str:
    """What the partition key of every row a mirror sink keeps for ``tenant`` begins with."""
    return scoped_key(tenant, resource_key(f"{sink}|"))


class RemovedTenants:
    """One mirror sink's record of removed tenants, and the cleanup of one."""

    def __init__(
        self,
        sink: str,
        index: TableClient,
        container: ContainerClient,
        order: OrderBook,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._index = index
        self._container = container
        self._order = order
        self._monotonic = monotonic
        self._known: dict[str, tuple[float, str]] = {}  # tenant -> (when read, removedAt or '')

    @property
    def _partition(self) -> str:
        return resource_key(f"{self._sink}|removed-tenants")

    async def forget(self, tenant: str, removed_at: str) -> None:
        """Record ``tenant``'s removal, then delete its blobs, its rows and its order rows."""
        from azure.core.exceptions import ResourceNotFoundError

        await self._index.upsert_entity({"PartitionKey": self._partition, "RowKey": tenant, "removedAt": removed_at})
        self._known[tenant] = (self._monotonic(), removed_at)
        root = tenant_root(tenant)
        for prefix in (root, DELETED_PREFIX + root):
            async for listed in self._container.list_blobs(name_starts_with=prefix):
                with contextlib.suppress(ResourceNotFoundError):
                    await self._container.get_blob_client(checked_blob(listed.name)).delete_blob()
        query = prefix_filter("PartitionKey", tenant_rows(self._sink, tenant))
        async for row in self._index.query_entities(query, select=["PartitionKey", "RowKey"]):
            with contextlib.suppress(ResourceNotFoundError):
                await self._index.delete_entity(row["PartitionKey"], row["RowKey"])
        await self._order.forget(tenant)

    async def removed_after(self, tenant: str, observed_at: str) -> bool:
        """True when ``tenant`` was removed after an event observed at ``observed_at`` (read once a minute)."""
        from azure.core.exceptions import ResourceNotFoundError

        known = self._known.get(tenant)
        if known is None or self._monotonic() - known[0] > REMOVAL_CACHE_SECONDS:
            try:
                removed_at = str((await self._index.get_entity(self._partition, tenant)).get("removedAt", ""))
            except ResourceNotFoundError:
                removed_at = ""
            known = (self._monotonic(), removed_at)
            self._known[tenant] = known
        if not known[1]:
            return False
        try:
            return parse_time(observed_at) <= parse_time(known[1])
        except ValueError:
            return True  # no time to tell it from a late retry: the tenant is gone
