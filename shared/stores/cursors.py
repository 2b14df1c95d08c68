"""Delta cursors in Table storage, with ETag-conditional writes and a run lease.

Several instances may process notifications for one resource at once: every
write is conditional on the ETag read, so the loser learns it lost instead of
overwriting a newer cursor. Each write also reports storage's own time of the
write, which coalescing compares with queue insertion times: one clock, not two
instances' clocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from shared.clock import parse_time, utcnow
from shared.errors import CursorConflictError
from shared.model.cursor import CursorState, Mode, StoredCursor
from shared.stores.tables import ensure_table

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "cursor"
# Table storage has no null for a typed property; the epoch stands for "none".
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
# Table ETags embed the entity's Timestamp: W/"datetime'2026-11-22T06%3A11%3A05.3233466Z'".
_ETAG_TIME = re.compile(r"datetime'([^']+)'")


def storage_time(metadata: Mapping[str, Any]) -> datetime:
    """Storage's time of a write: the ETag's Timestamp, else the (whole-second) Date header."""
    match = _ETAG_TIME.search(str(metadata.get("etag") or ""))
    if match:
        try:
            return parse_time(unquote(match.group(1)))
        except ValueError:
            pass
    date = metadata.get("date")
    return date if isinstance(date, datetime) else utcnow()


def _http_date(dates: list[str]) -> datetime | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(dates[-1]).astimezone(UTC) if dates and dates[-1] else None
    except (TypeError, ValueError):
        return None


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
        "Mode": state.mode.value if state.mode else "",
        "NextLink": state.next_link or "",
        "FinalLink": state.final_link or "",
        "PassId": state.pass_id,
        "PassStarted": state.pass_started or _NEVER,
        "Since": state.since or _NEVER,
        "Pages": state.pages,
        "ContainerId": state.container_id,
    }


def _state(entity: Any) -> CursorState:
    mode = entity.get("Mode") or ""
    return CursorState(
        delta_link=entity.get("DeltaLink") or None,
        synced_from=_optional_time(entity.get("SyncedFrom")),
        lease_until=_optional_time(entity.get("LeaseUntil")),
        mode=Mode(mode) if mode else None,
        next_link=entity.get("NextLink") or None,
        final_link=entity.get("FinalLink") or None,
        pass_id=entity.get("PassId") or "",
        pass_started=_optional_time(entity.get("PassStarted")),
        since=_optional_time(entity.get("Since")),
        pages=int(entity.get("Pages") or 0),
        container_id=entity.get("ContainerId") or "",
    )


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

        dates: list[str] = []

        def date_of(response: Any) -> None:
            dates.append(response.http_response.headers.get("Date") or "")

        try:
            entity = await self._client.get_entity(PARTITION, key, raw_response_hook=date_of)
        except ResourceNotFoundError:
            return StoredCursor(key, CursorState(), None, read_at=_http_date(dates))
        return StoredCursor(
            key, _state(entity), entity.metadata["etag"], entity.metadata.get("timestamp"), _http_date(dates)
        )

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
        return StoredCursor(cursor.key, state, metadata["etag"], storage_time(metadata))

    async def delete(self, key: str) -> None:
        """Forget a cursor; a missing one is fine."""
        await self._client.delete_entity(PARTITION, key)
