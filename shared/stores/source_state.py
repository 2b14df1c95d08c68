"""What change sources remember besides their link, in the ``sourcestate`` table.

One partition per resource key, one row per entry (RowKey: the entry's name).
Only the synchronizer writes here, as part of a page's commit: after the page's
events and index rows are stored and before its cursor moves on (see
model/changes.py). Sources read it through ``view``.

Why the order is enough, with no transaction across the two tables: every entry a
page writes only ever records a position whose changes are already stored. A
crash between this write and the cursor's repeats the page from the old link,
which reads the same changes again (same event ids) or, where the source starts
from the entry just written, nothing it has not already stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from shared.model.changes import SourceState, StateWrite
from shared.stores.tables import ensure_table, quote_filter, submit_batches

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

# A string property holds 64 KiB of UTF-16: 32,768 characters at most.
MAX_VALUE_CHARS = 32_000


class SourceStateStore:
    """Every source's saved state, one partition per resource key."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    def view(self, key: str) -> SourceState:
        """The read-only state of ``key``'s resource, as its source sees it."""
        return _View(self._client, key)

    async def apply(self, key: str, writes: Iterable[StateWrite]) -> None:
        """Set and remove entries; the last write of a name wins."""
        latest = {w.name: w for w in writes}
        operations: list[tuple[str, dict[str, Any]]] = []
        for write in latest.values():
            if write.value is None:
                operations.append(("delete", {"PartitionKey": key, "RowKey": write.name}))
                continue
            if len(write.value) > MAX_VALUE_CHARS:
                raise ValueError(f"state entry {write.name!r} holds {len(write.value)} characters")
            operations.append(("upsert", {"PartitionKey": key, "RowKey": write.name, "Value": write.value}))
        await submit_batches(self._client, operations)

    async def forget(self, key: str) -> None:
        """Drop every entry of ``key`` (nothing subscribes to its resource any more)."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(key)}", select=["RowKey"])
        operations = [("delete", {"PartitionKey": key, "RowKey": str(e["RowKey"])}) async for e in query]
        await submit_batches(self._client, operations)


class _View:
    """Reads of one resource's entries."""

    def __init__(self, client: TableClient, key: str) -> None:
        self._client = client
        self._key = key

    async def get(self, name: str) -> str | None:
        """The entry's value, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._client.get_entity(self._key, name)
        except ResourceNotFoundError:
            return None
        return str(entity.get("Value") or "") or None

    async def after(self, prefix: str, name: str | None) -> tuple[str, str] | None:
        """The first entry under ``prefix`` after ``name``: one query for one row."""
        condition = _under(self._key, prefix)
        if name is not None:
            condition += f" and RowKey gt {quote_filter(name)}"
        pages = self._client.query_entities(condition, results_per_page=1).by_page()
        async for page in pages:
            async for entity in page:
                return str(entity["RowKey"]), str(entity.get("Value") or "")
        return None

    async def names(self, prefix: str) -> AsyncIterator[str]:
        """Every entry name under ``prefix``, in RowKey order."""
        query = self._client.query_entities(_under(self._key, prefix), select=["RowKey"])
        async for entity in query:
            yield str(entity["RowKey"])


def _under(key: str, prefix: str) -> str:
    """A filter for the rows of ``key`` whose RowKey starts with ``prefix``."""
    condition = f"PartitionKey eq {quote_filter(key)}"
    if prefix:
        # Every string starting with the prefix sorts at or after it and before its last character's successor.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        condition += f" and RowKey ge {quote_filter(prefix)} and RowKey lt {quote_filter(upper)}"
    return condition
