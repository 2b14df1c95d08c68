"""Delta cursors in Table storage, with ETag-conditional writes and a run lease.

Several instances may process notifications for one resource at once: every
write is conditional on the ETag read, so the loser learns it lost instead of
overwriting a newer cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .coalescing import CursorState
from .errors import CursorConflictError
from .tables import ensure_table

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "cursor"
# Table storage has no null for a typed property; the epoch stands for "none".
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoredCursor:
    """A cursor's state and the ETag to make the next write conditional on."""

    key: str
    state: CursorState
    etag: str | None

    @property
    def exists(self) -> bool:
        """False when no cursor was ever saved for this key."""
        return self.etag is not None


def _optional_time(value: Any) -> datetime | None:
    if value is None or value <= _NEVER:
        return None
    return value  # type: ignore[no-any-return]


def _entity(key: str, state: CursorState) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": key,
        "DeltaLink": state.delta_link or "",
        "SyncedFrom": state.synced_from or _NEVER,
        "LeaseUntil": state.lease_until or _NEVER,
    }


class CursorStore:
    """One cursor per resource key."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def load(self, key: str) -> StoredCursor:
        """Read a cursor; a missing one comes back empty with no ETag."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._client.get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return StoredCursor(key, CursorState(), None)
        state = CursorState(
            delta_link=entity.get("DeltaLink") or None,
            synced_from=_optional_time(entity.get("SyncedFrom")),
            lease_until=_optional_time(entity.get("LeaseUntil")),
        )
        return StoredCursor(key, state, entity.metadata["etag"])

    async def start(self, key: str, state: CursorState) -> bool:
        """Record a starting position unless a cursor exists; True when it was written."""
        from azure.core.exceptions import ResourceExistsError

        try:
            await self._client.create_entity(_entity(key, state))
        except ResourceExistsError:
            return False
        return True

    async def write(self, cursor: StoredCursor, state: CursorState) -> StoredCursor:
        """Replace the cursor if nobody changed it since it was read; else CursorConflictError."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = _entity(cursor.key, state)
        try:
            if cursor.etag is None:
                metadata = await self._client.create_entity(entity)
            else:
                metadata = await self._client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=cursor.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise CursorConflictError(f"cursor {cursor.key} changed meanwhile") from exc
        return StoredCursor(cursor.key, state, metadata["etag"])

    async def delete(self, key: str) -> None:
        """Forget a cursor; a missing one is fine."""
        await self._client.delete_entity(PARTITION, key)
