"""Per-folder deltaLinks of an all-folder message walk, in the ``outlookfolders`` table.

One partition per resource key, one row per mail folder (RowKey: a hash of the
folder id, which may hold characters a RowKey forbids). Rows come back in RowKey
order, which is the walk's order: the next folder is one query for the first row
after the current one, so a walk needs no folder list in memory or in its cursor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...stores.tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

FOLDERS_TABLE = "outlookfolders"
_BATCH = 100  # Table storage's limit for one transaction


def folder_row(folder_id: str) -> str:
    """A folder id as a RowKey: fixed length, no forbidden characters."""
    return hashlib.sha256(folder_id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Folder:
    """One folder of a walk: its row key, Graph id, and the deltaLink its last round ended at."""

    row: str
    folder_id: str
    link: str | None


def _folder(entity: Any) -> Folder:
    return Folder(str(entity["RowKey"]), str(entity.get("FolderId", "")), entity.get("Link") or None)


class FolderPositions:
    """The folders of each walked mailbox, and each folder's deltaLink."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def replace(self, key: str, folder_ids: Iterable[str]) -> None:
        """Make ``key``'s rows the listed folders: new ones start with no link, saved links stay."""
        wanted = {folder_row(f): f for f in folder_ids}
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(key)}", select=["RowKey"])
        present = {str(e["RowKey"]) async for e in query}
        operations: list[tuple[str, dict[str, Any]]] = [
            ("upsert", {"PartitionKey": key, "RowKey": row, "FolderId": folder_id})
            for row, folder_id in wanted.items()
            if row not in present
        ]
        operations += [("delete", {"PartitionKey": key, "RowKey": row}) for row in present - wanted.keys()]
        for start in range(0, len(operations), _BATCH):
            await self._client.submit_transaction(operations[start : start + _BATCH])  # type: ignore[arg-type]

    async def after(self, key: str, row: str | None) -> Folder | None:
        """The walk's next folder after ``row`` (the first folder when None), or None at the end."""
        condition = f"PartitionKey eq {quote_filter(key)}"
        if row is not None:
            condition += f" and RowKey gt {quote_filter(row)}"
        pages = self._client.query_entities(condition, results_per_page=1).by_page()
        async for page in pages:
            async for entity in page:
                return _folder(entity)
        return None

    async def get(self, key: str, row: str) -> Folder | None:
        """One folder's row, or None when the folder left the walk."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _folder(await self._client.get_entity(key, row))
        except ResourceNotFoundError:
            return None

    async def save(self, key: str, folder: Folder, link: str) -> None:
        """Record the deltaLink a folder's round ended at."""
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": key, "RowKey": folder.row, "FolderId": folder.folder_id, "Link": link}
        await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def forget(self, key: str) -> None:
        """Drop a walk's rows (its subscription is gone)."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(key)}", select=["RowKey"])
        rows = [str(e["RowKey"]) async for e in query]
        operations = [("delete", {"PartitionKey": key, "RowKey": r}) for r in rows]
        for start in range(0, len(operations), _BATCH):
            await self._client.submit_transaction(operations[start : start + _BATCH])  # type: ignore[arg-type]
