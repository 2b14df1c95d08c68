"""The members of the groups that subscription sets expand over, and each group's delta link.

One table partition per group: a row per member (user id) and a state row with
the groups-delta link that continues from the stored membership. A refresh writes
the member rows that changed first and the link last, so a crash between the two
only repeats a delta whose adds and removes are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.model.tenant import scope_prefix
from shared.stores.items import row_key
from shared.stores.tables import ensure_table, prefix_filter, quote_filter, submit_batches

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

# Sorts before every member id (GUIDs), and no user id starts with '!'.
STATE_ROW = "!state"


@dataclass(frozen=True)
class MemberSet:
    """A group's members as last followed, and the delta link to continue from (None: enumerate)."""

    members: frozenset[str] = frozenset()
    delta_link: str | None = None


class MemberStore:
    """Group memberships in Table storage, one partition per group id."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def load(self, group_id: str) -> MemberSet:
        """The stored membership of ``group_id`` (empty, with no link, when never followed)."""
        members: set[str] = set()
        link: str | None = None
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(row_key(group_id))}")
        async for entity in query:
            if entity["RowKey"] == STATE_ROW:
                link = str(entity.get("DeltaLink") or "") or None
            else:
                members.add(str(entity.get("MemberId") or entity["RowKey"]))
        return MemberSet(frozenset(members), link)

    async def forget_tenant(self, tenant: str) -> None:
        """Delete every membership kept for ``tenant``'s subscription sets."""
        query = self._client.query_entities(
            prefix_filter("PartitionKey", row_key(scope_prefix(tenant))), select=["PartitionKey", "RowKey"]
        )
        rows = [(str(e["PartitionKey"]), str(e["RowKey"])) async for e in query]
        for partition, row in rows:
            await self._client.delete_entity(partition, row)

    async def save(self, group_id: str, before: MemberSet, after: MemberSet) -> None:
        """Write the difference between ``before`` (as stored) and ``after``, then the link."""
        partition = row_key(group_id)
        added = sorted(after.members - before.members)
        removed = sorted(before.members - after.members)
        operations: list[tuple[str, dict[str, Any]]] = [
            ("upsert", {"PartitionKey": partition, "RowKey": row_key(m), "MemberId": m}) for m in added
        ]
        operations += [("delete", {"PartitionKey": partition, "RowKey": row_key(m)}) for m in removed]
        await submit_batches(self._client, operations)
        state = {"PartitionKey": partition, "RowKey": STATE_ROW, "DeltaLink": after.delta_link or ""}
        await self._client.upsert_entity(state)
