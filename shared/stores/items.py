"""The item index: which items of a resource this app has reported, at which version.

It tells a created item from an updated one, and after an enumeration it tells
which items vanished, so no deletion is lost. Nothing here loads a whole
partition: lookups are point reads per delta page, and an enumerating pass marks each row it
sees with its pass id, so the rows it did not mark can be read back page by page.

A deleted item keeps a tombstone row with the version it had, so a repeated run
recognises a deletion it already reported, and a restored item deleted again
gets a new deletion event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from shared.model.index import IndexWrite, Known
from shared.stores.tables import batches, ensure_table, quote_filter, submit_batch

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

UNMARKED_PAGE = 1000
# The columns a lookup reads.
_KNOWN = ["Version", "Deleted", "Life", "Detail"]


def _known(entity: Any) -> Known:
    return Known(
        str(entity.get("Version", "")),
        bool(entity.get("Deleted", False)),
        int(entity.get("Life") or 0),
        str(entity.get("Detail") or ""),
    )


def row_key(item_id: str) -> str:
    """An opaque item id as a RowKey, which forbids '/', '\\', '#' and '?'."""
    return item_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("#", "%23").replace("?", "%3F")


class ItemIndex:
    """Known item versions, one table partition per resource key."""

    def __init__(self, client: TableClient, concurrency: int = 8, lookups: int = 32) -> None:
        self._client = client
        self._concurrency = concurrency
        self._lookups = lookups

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def known(self, key: str, item_ids: Iterable[str]) -> dict[str, Known]:
        """What the index holds for each of ``item_ids`` (unknown ones are absent).

        Point reads, ``lookups`` at once: each costs the same whatever the index's size.
        A filter of ORed RowKeys would be one request per 14 ids (Table storage allows 15
        comparisons), but Table storage runs it as a scan of the whole partition, so a
        page would cost more the larger the drive (Azure's table design guide).
        """
        from azure.core.exceptions import ResourceNotFoundError

        gate = asyncio.Semaphore(self._lookups)

        async def one(item_id: str) -> tuple[str, Known | None]:
            async with gate:
                try:
                    entity = await self._client.get_entity(key, row_key(item_id), select=_KNOWN)
                except ResourceNotFoundError:
                    return item_id, None
            return item_id, _known(entity)

        found = await asyncio.gather(*(one(i) for i in dict.fromkeys(item_ids)))
        return {item_id: known for item_id, known in found if known is not None}

    async def apply(self, key: str, writes: Iterable[IndexWrite]) -> None:
        """Write rows in transactions of 100, a few at once."""
        operations = [
            (
                "upsert",
                {
                    "PartitionKey": key,
                    "RowKey": row_key(w.item_id),
                    "ItemId": w.item_id,
                    "Version": w.version,
                    "Deleted": w.deleted,
                    "Pass": w.pass_id,
                    "Life": w.life,
                    "Detail": w.detail,
                },
            )
            for w in writes
        ]
        await self._submit_all(operations)

    async def unmarked(self, key: str, pass_id: str) -> AsyncIterator[list[tuple[str, Known]]]:
        """Pages of the rows that pass ``pass_id`` did not mark (every row has a Pass value)."""
        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(key)} and Pass ne {quote_filter(pass_id)}",
            select=["ItemId", *_KNOWN],
            results_per_page=UNMARKED_PAGE,
        )
        async for page in query.by_page():
            rows = [(str(e["ItemId"]), _known(e)) async for e in page]
            if rows:
                yield rows

    async def purge(self, key: str, item_ids: Iterable[str]) -> None:
        """Remove rows (tombstones an enumeration no longer needs)."""
        await self._submit_all([("delete", {"PartitionKey": key, "RowKey": row_key(i)}) for i in item_ids])

    async def forget(self, key: str) -> None:
        """Drop a resource's whole partition (its subscription is gone), page by page."""
        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(key)}", select=["RowKey"], results_per_page=UNMARKED_PAGE
        )
        async for page in query.by_page():
            keys = [str(e["RowKey"]) async for e in page]
            await self._submit_all([("delete", {"PartitionKey": key, "RowKey": k}) for k in keys])

    async def _submit_all(self, operations: list[tuple[str, dict[str, Any]]]) -> None:
        gate = asyncio.Semaphore(self._concurrency)

        async def one(batch: list[tuple[str, dict[str, Any]]]) -> None:
            async with gate:
                await submit_batch(self._client, batch)

        await asyncio.gather(*(one(batch) for batch in batches(operations)))
