"""The tenants a multi-tenant deployment serves: table ``tenants``, one row per tenant.

Rows are written with the etag they were read with, so two instances that change the
same tenant at once (a consent and a suspension) cannot overwrite each other unseen:
the second gets TenantConflictError and reads again. A tenant's last successful pass
is kept in a row of its own (partition ``pass``), written by the queue trigger without
touching the tenant's row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import TenantConflictError
from shared.model.tenant import Tenant, canonical_tenant_id
from shared.stores.tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "tenant"
LAST_PASS = "pass"


def _to_entity(tenant: Tenant) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": tenant.tenant_id,
        "Name": tenant.name,
        "Status": tenant.status,
        "AddedAt": tenant.added_at,
        "UpdatedAt": tenant.updated_at,
        "Reason": tenant.reason,
        "SuspendedAt": tenant.suspended_at,
        "CheckedAt": tenant.checked_at,
    }


def _from_entity(entity: Any) -> Tenant:
    return Tenant(
        tenant_id=str(entity["RowKey"]),
        name=str(entity.get("Name") or ""),
        status=str(entity["Status"]),
        added_at=entity["AddedAt"],
        updated_at=entity["UpdatedAt"],
        reason=str(entity.get("Reason") or ""),
        suspended_at=entity.get("SuspendedAt"),
        checked_at=entity.get("CheckedAt"),
    )


class StoredTenant:
    """A tenant as read, with the etag its next write must match."""

    __slots__ = ("etag", "tenant")

    def __init__(self, tenant: Tenant, etag: str | None) -> None:
        self.tenant = tenant
        self.etag = etag


class TenantStore:
    """Tenant rows: added, read, changed under their etag, deleted."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def get(self, tenant_id: str) -> StoredTenant | None:
        """The tenant with its etag, or None when it is not registered."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._client.get_entity(PARTITION, canonical_tenant_id(tenant_id))
        except ResourceNotFoundError:
            return None
        return StoredTenant(_from_entity(entity), entity.metadata.get("etag"))

    async def all(self) -> AsyncIterator[Tenant]:
        """Every registered tenant, page by page (a few thousand rows at most)."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(PARTITION)}")
        async for entity in query:
            yield _from_entity(entity)

    async def list(self) -> list[Tenant]:
        """Every registered tenant."""
        return [tenant async for tenant in self.all()]

    async def add(self, tenant: Tenant) -> bool:
        """Register ``tenant``; False (nothing written) when a row for it exists already."""
        from azure.core.exceptions import ResourceExistsError

        try:
            await self._client.create_entity(_to_entity(tenant))
        except ResourceExistsError:
            return False
        return True

    async def save(self, tenant: Tenant, etag: str | None) -> None:
        """Replace the tenant's row if it is unchanged since read with ``etag``; TenantConflictError otherwise."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            if etag is None:
                await self._client.upsert_entity(_to_entity(tenant), mode=UpdateMode.REPLACE)
            else:
                unchanged = MatchConditions.IfNotModified
                await self._client.update_entity(
                    _to_entity(tenant), mode=UpdateMode.REPLACE, etag=etag, match_condition=unchanged
                )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise TenantConflictError(f"tenant {tenant.tenant_id} changed or went away meanwhile") from exc

    async def delete(self, tenant_id: str) -> None:
        """Remove the tenant's rows; missing ones are fine."""
        await self._client.delete_entity(PARTITION, tenant_id)
        await self._client.delete_entity(LAST_PASS, tenant_id)

    async def mark_pass(self, tenant_id: str, at: datetime) -> None:
        """Record that a delta pass of the tenant completed at ``at`` (for `graphhooks tenants list`)."""
        from azure.data.tables import UpdateMode

        await self._client.upsert_entity(
            {"PartitionKey": LAST_PASS, "RowKey": tenant_id, "At": at}, mode=UpdateMode.REPLACE
        )

    async def last_passes(self) -> dict[str, datetime]:
        """Each tenant's last completed pass, as far as recorded."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(LAST_PASS)}", select=["RowKey", "At"])
        return {str(entity["RowKey"]): entity["At"] async for entity in query if entity.get("At")}
