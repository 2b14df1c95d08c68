"""Table ``consentstate``: the key consent states are signed with, and the states already redeemed.

The key is 32 random bytes made on first use and kept in the table, rather than in a
setting an operator would have to create and rotate: every instance reads the same row,
and two instances that make one at once agree, since only one ``create_entity`` succeeds
and the other reads the winner's back. Anyone who can read the table can write table
``tenants`` too, so keeping the key beside it gives nothing away.

A redeemed state is a row keyed by the state's id, inserted with ``create_entity``: a second
insert of the same id fails, which is what makes a state usable once, across instances.
Rows are pruned once past their state's expiry (the state is refused as expired by then):
``prune`` runs after each redemption, a bounded number of rows at a time.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import StorageUnavailableError
from shared.stores.tables import ensure_table
from shared.tenants.state import KEY_BYTES, ConsentState

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

KEY_PARTITION = "key"
SIGNING_KEY = "signing"
USED_PARTITION = "used"
# Rows deleted per prune: each redemption adds one row and removes up to this many.
PRUNE_LIMIT = 100


class ConsentStateStore:
    """The signing key (made once, then cached) and the redeemed states."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._key: bytes | None = None

    async def signing_key(self) -> bytes:
        """The key every instance signs and checks states with; made on first use."""
        from azure.core.exceptions import ResourceExistsError

        if self._key is not None:
            return self._key
        key = await self._read_key()
        if key is None:
            await ensure_table(self._client)
            made = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
            try:
                await self._client.create_entity({"PartitionKey": KEY_PARTITION, "RowKey": SIGNING_KEY, "Key": made})
                key = base64.b64decode(made)
            except ResourceExistsError:
                key = await self._read_key()  # another instance made it first: use theirs
            if key is None:
                raise StorageUnavailableError(f"table consentstate holds no usable {SIGNING_KEY!r} key row")
        self._key = key
        return key

    async def redeem(self, state: ConsentState, now: datetime) -> bool:
        """Mark ``state`` used; False when it was used before (nothing written then)."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        entity = {
            "PartitionKey": USED_PARTITION,
            "RowKey": state.state_id,
            "ExpiresAt": state.expires_at,
            "RedeemedAt": now,
        }
        try:
            try:
                await self._client.create_entity(entity)
            except ResourceNotFoundError:  # the table went away since the key was read
                await ensure_table(self._client)
                await self._client.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    async def prune(self, now: datetime, limit: int = PRUNE_LIMIT) -> int:
        """Delete up to ``limit`` redeemed-state rows whose state expired before ``now``; how many."""
        from azure.core.exceptions import ResourceNotFoundError

        query = self._client.query_entities(
            "PartitionKey eq @partition and ExpiresAt lt @now",
            parameters={"partition": USED_PARTITION, "now": now},
            select=["PartitionKey", "RowKey"],
            results_per_page=limit,
        )
        deleted = 0
        try:
            async for entity in query:
                if deleted >= limit:
                    break
                await self._client.delete_entity(USED_PARTITION, str(entity["RowKey"]))
                deleted += 1
        except ResourceNotFoundError:
            return deleted  # no table yet: nothing to prune
        return deleted

    async def _read_key(self) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._client.get_entity(KEY_PARTITION, SIGNING_KEY)
        except ResourceNotFoundError:
            return None
        key = base64.b64decode(str(entity["Key"]))
        return key if len(key) >= KEY_BYTES else None
