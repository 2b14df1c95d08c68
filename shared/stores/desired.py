"""Desired subscriptions kept in Table storage, beside the GRAPH_SUBSCRIPTIONS seed.

The app setting has a size limit and needs a restart to change; rows in table
``desiredsubscriptions`` (managed with ``graphhooks desired``) take effect on the next
renew tick. The renew timer wants the union of both; on a conflict (the same resource
and changeType, other options) the table's entry wins, since it is the newer, deliberate
edit. Rows are validated by the same rules as the setting before they are written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared.model.resources import DesiredSubscription
from shared.model.tenant import scope_of, scope_prefix
from shared.stores.tables import ensure_table, prefix_filter, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "desired"


def _to_entity(item: DesiredSubscription) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": item.key,
        "Resource": item.resource,
        "ChangeType": item.change_type,
        "IncludeResourceData": item.include_resource_data,
        "ForEachMemberOf": item.for_each_member_of or "",
        "Query": item.query,
    }


def _from_entity(entity: Any) -> DesiredSubscription:
    return DesiredSubscription(
        resource=str(entity["Resource"]),
        change_type=str(entity["ChangeType"]),
        include_resource_data=bool(entity.get("IncludeResourceData")),
        for_each_member_of=str(entity.get("ForEachMemberOf") or "") or None,
        query=str(entity.get("Query") or ""),
        # A tenant's own entry (graphhooks desired add --tenant) is keyed within its tenant.
        tenant=scope_of(str(entity["RowKey"])),
    )


def merge_desired(
    seed: Iterable[DesiredSubscription], table: Iterable[DesiredSubscription]
) -> tuple[DesiredSubscription, ...]:
    """The seed's entries, then the table's; an entry of the table replaces the seed's with its key."""
    merged = {item.key: item for item in seed}
    merged.update((item.key, item) for item in table)
    return tuple(merged.values())


class DesiredStore:
    """Desired subscriptions, one row per DesiredSubscription key."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def list(self) -> tuple[DesiredSubscription, ...]:
        """Every stored entry; none when the table was never created."""
        from azure.core.exceptions import ResourceNotFoundError

        query = self._client.query_entities(f"PartitionKey eq {quote_filter(PARTITION)}")
        try:
            return tuple([_from_entity(entity) async for entity in query])
        except ResourceNotFoundError:
            return ()

    async def add(self, item: DesiredSubscription) -> None:
        """Insert or replace the entry with ``item``'s key."""
        from azure.data.tables import UpdateMode

        await self.setup()
        await self._client.upsert_entity(_to_entity(item), mode=UpdateMode.REPLACE)

    async def forget_tenant(self, tenant: str) -> int:
        """Delete every entry of ``tenant`` (its own, not the templates); return how many went."""
        from azure.core.exceptions import ResourceNotFoundError

        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(PARTITION)} and {prefix_filter('RowKey', scope_prefix(tenant))}",
            select=["RowKey"],
        )
        try:
            keys = [str(entity["RowKey"]) async for entity in query]
        except ResourceNotFoundError:
            return 0
        for key in keys:
            await self._client.delete_entity(PARTITION, key)
        return len(keys)

    async def remove(self, key: str) -> bool:
        """Delete the entry with ``key``; False when there was none."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._client.get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return False
        await self._client.delete_entity(PARTITION, key)
        return True


async def desired_subscriptions(
    seed: Iterable[DesiredSubscription], store: DesiredStore | None
) -> tuple[DesiredSubscription, ...]:
    """What the renew timer reconciles: the seed and the table (a read failure raises: nothing is deleted)."""
    if store is None:
        return tuple(seed)
    return merge_desired(seed, await store.list())
