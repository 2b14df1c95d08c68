"""The item index: which items of a resource this app has reported, at which version.

It tells a created item from an updated one, and after an enumeration it tells
which items vanished, so no deletion is lost. Nothing here loads a whole
partition: lookups are per delta page, and an enumerating pass marks each row it
sees with its pass id, so the rows it did not mark can be read back page by page.

A deleted item keeps a tombstone row with the version it had, so a repeated run
recognises a deletion it already reported, and a restored item deleted again
gets a new deletion event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

_BATCH = 100  # Table storage's limit for one transaction
# Table storage allows at most 15 comparisons in one filter: the PartitionKey and 14 RowKeys.
_LOOKUP_CHUNK = 14
UNMARKED_PAGE = 1000


@dataclass(frozen=True)
class Known:
    """What the index holds for one item: its last reported version, and whether it is deleted."""

    version: str
    deleted: bool = False


@dataclass(frozen=True)
class IndexWrite:
    """One row to write: the item's version and state, and the pass that saw it ('' for none)."""

    item_id: str
    version: str
    deleted: bool = False
    pass_id: str = ""


def _known(entity: Any) -> Known:
    return Known(str(entity.get("Version", "")), bool(entity.get("Deleted", False)))


def row_key(item_id: str) -> str:
    """An opaque item id as a RowKey, which forbids '/', '\\', '#' and '?'."""
    return item_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("#", "%23").replace("?", "%3F")


class ItemIndex:
    """Known item versions, one table partition per resource key."""

    def __init__(self, client: TableClient, concurrency: int = 8) -> None:
        self._client = client
        self._concurrency = concurrency

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def known(self, key: str, item_ids: Iterable[str]) -> dict[str, Known]:
        """What the index holds for each of ``item_ids`` (unknown ones are absent).

        One query per 14 ids, run concurrently: a page of 200 items costs 15 queries, not 200 reads.
        """
        ids = list(dict.fromkeys(item_ids))
        gate = asyncio.Semaphore(self._concurrency)

        async def chunk(part: Sequence[str]) -> list[Any]:
            rows = " or ".join(f"RowKey eq {quote_filter(row_key(i))}" for i in part)
            query = f"PartitionKey eq {quote_filter(key)} and ({rows})"
            async with gate:
                return [e async for e in self._client.query_entities(query, select=["ItemId", "Version", "Deleted"])]

        found = await asyncio.gather(*(chunk(ids[i : i + _LOOKUP_CHUNK]) for i in range(0, len(ids), _LOOKUP_CHUNK)))
        return {str(e["ItemId"]): _known(e) for rows in found for e in rows}

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
                },
            )
            for w in writes
        ]
        await self._submit_all(operations)

    async def unmarked(self, key: str, pass_id: str) -> AsyncIterator[list[tuple[str, Known]]]:
        """Pages of the rows that pass ``pass_id`` did not mark (every row has a Pass value)."""
        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(key)} and Pass ne {quote_filter(pass_id)}",
            select=["ItemId", "Version", "Deleted"],
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
                await self._submit(batch)

        await asyncio.gather(*(one(operations[i : i + _BATCH]) for i in range(0, len(operations), _BATCH)))

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
