"""The item index: which items of a resource this app has reported, at which version.

It tells a created item from an updated one, and after a 410 resync it tells
which items vanished while the cursor was stale, so no deletion is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

_BATCH = 100  # Table storage's limit for one transaction


def _row_key(item_id: str) -> str:
    # Item ids are opaque; these four characters are not allowed in a RowKey.
    return item_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("#", "%23").replace("?", "%3F")


class ItemIndex:
    """Known item versions, one table partition per resource key."""

    def __init__(self, client: TableClient, concurrency: int = 16) -> None:
        self._client = client
        self._concurrency = concurrency

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def versions(self, key: str, item_ids: Iterable[str]) -> dict[str, str]:
        """The known version of each of ``item_ids`` (unknown ones are absent)."""
        from azure.core.exceptions import ResourceNotFoundError

        gate = asyncio.Semaphore(self._concurrency)

        async def one(item_id: str) -> tuple[str, str | None]:
            async with gate:
                try:
                    entity = await self._client.get_entity(key, _row_key(item_id))
                except ResourceNotFoundError:
                    return item_id, None
                return item_id, str(entity.get("Version", ""))

        found = await asyncio.gather(*(one(i) for i in item_ids))
        return {item_id: version for item_id, version in found if version is not None}

    async def all_versions(self, key: str) -> dict[str, str]:
        """Every known item of a resource, for a resync's comparison."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(key)}", select=["ItemId", "Version"])
        return {entity["ItemId"]: str(entity.get("Version", "")) async for entity in query}

    async def apply(self, key: str, upserts: Mapping[str, str], deletes: Iterable[str]) -> None:
        """Record new versions and forget deleted items, in transactions of 100."""
        operations: list[tuple[str, dict[str, Any]]] = [
            ("upsert", {"PartitionKey": key, "RowKey": _row_key(i), "ItemId": i, "Version": v})
            for i, v in upserts.items()
        ]
        operations += [("delete", {"PartitionKey": key, "RowKey": _row_key(i)}) for i in deletes]
        for start in range(0, len(operations), _BATCH):
            await self._submit(operations[start : start + _BATCH])

    async def forget(self, key: str) -> None:
        """Drop a resource's whole partition (its subscription is gone)."""
        known = await self.all_versions(key)
        await self.apply(key, {}, known)

    async def _submit(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import TableTransactionError

        try:
            await self._client.submit_transaction(batch)  # type: ignore[arg-type]
        except TableTransactionError:
            # A delete of a row that is already gone fails the whole batch; go one by one.
            for operation, entity in batch:
                if operation == "upsert":
                    await self._client.upsert_entity(entity)
                else:
                    with contextlib.suppress(ResourceNotFoundError):
                        await self._client.delete_entity(entity["PartitionKey"], entity["RowKey"])
