"""Subscription records: what this app created at Graph, kept in Table storage."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .tables import ensure_table, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "subscription"
ACTIVE = "active"
CREATING = "creating"


@dataclass(frozen=True)
class SubscriptionRecord:
    """One desired subscription and, once created, Graph's id and expiry for it."""

    key: str
    resource: str
    change_type: str
    client_state: str
    status: str
    updated_at: datetime
    subscription_id: str = ""
    expires_at: datetime | None = None

    def activated(self, subscription_id: str, expires_at: datetime, now: datetime) -> SubscriptionRecord:
        """The record once Graph has created the subscription."""
        return replace(self, subscription_id=subscription_id, expires_at=expires_at, status=ACTIVE, updated_at=now)


def _to_entity(record: SubscriptionRecord) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": record.key,
        "Resource": record.resource,
        "ChangeType": record.change_type,
        "ClientState": record.client_state,
        "Status": record.status,
        "UpdatedAt": record.updated_at,
        "SubscriptionId": record.subscription_id,
        "ExpiresAt": record.expires_at,
    }


def _from_entity(entity: Any) -> SubscriptionRecord:
    return SubscriptionRecord(
        key=entity["RowKey"],
        resource=entity["Resource"],
        change_type=entity["ChangeType"],
        client_state=entity["ClientState"],
        status=entity["Status"],
        updated_at=entity["UpdatedAt"],
        subscription_id=entity.get("SubscriptionId") or "",
        expires_at=entity.get("ExpiresAt"),
    )


class SubscriptionStore:
    """Subscription records in one table, keyed by the desired subscription's key."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def list(self) -> list[SubscriptionRecord]:
        """Every stored record."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(PARTITION)}")
        return [_from_entity(entity) async for entity in query]

    async def secrets(self) -> dict[str, str]:
        """Map each active subscription id to its clientState (for the HTTP path)."""
        from azure.core.exceptions import ResourceNotFoundError

        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(PARTITION)}", select=["SubscriptionId", "ClientState"]
        )
        try:
            return {
                entity["SubscriptionId"]: entity["ClientState"]
                async for entity in query
                if entity.get("SubscriptionId")
            }
        except ResourceNotFoundError:
            return {}  # no table yet: nothing was ever subscribed

    async def find(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record holding Graph subscription ``subscription_id``, if any."""
        query = self._client.query_entities(
            f"PartitionKey eq {quote_filter(PARTITION)} and SubscriptionId eq {quote_filter(subscription_id)}"
        )
        async for entity in query:
            return _from_entity(entity)
        return None

    async def save(self, record: SubscriptionRecord) -> None:
        """Insert or replace a record."""
        from azure.data.tables import UpdateMode

        await self._client.upsert_entity(_to_entity(record), mode=UpdateMode.REPLACE)

    async def delete(self, key: str) -> None:
        """Remove a record; a missing one is fine."""
        await self._client.delete_entity(PARTITION, key)
