"""Subscription records: what this app created at Graph, kept in Table storage.

Two kinds of row share the table. A record (partition ``subscription``, keyed by
the desired subscription's key) holds everything about one subscription; an id
row (partition ``byid``, keyed by Graph's subscription id) points at its record
and holds the clientState, so the HTTP path and the processor find a
subscription with one point read. Rows of different partitions cannot share a
transaction, so writes are ordered: an id row is written before its record
switches to that id, and removed only after the record has moved on. A crash
leaves at worst an id row whose record no longer names it, which ``find``
ignores. A third kind, the ``pending`` rows (stores/pending.py), covers a creation
from before Graph is asked until its record names the new id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import utcnow
from shared.errors import SubscriptionPendingError
from shared.model.subscription import ACTIVE, SubscriptionRecord, SubscriptionSecret
from shared.model.tenant import scope_of, scope_prefix
from shared.stores.pending import PendingCreation, PendingCreations
from shared.stores.tables import ensure_table, prefix_filter, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "subscription"
BY_ID = "byid"
# When a record's last notification arrived: rows of their own, so a record's REPLACE save never erases them.
NOTIFIED = "notified"
# Table keys may not hold these; an id that does cannot be ours (and must not shape a URL).
_FORBIDDEN_KEY_CHARACTERS = frozenset("/\\#?")
_MAX_KEY_LENGTH = 512


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
        "Query": record.query,
        "CertificateId": record.certificate_id,
        "CertificateThumbprint": record.certificate_thumbprint,
        "Delivery": record.delivery,
        # Marks a record whose id row is written with it (records from before id rows lack it).
        "Indexed": True,
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
        query=entity.get("Query") or "",
        certificate_id=entity.get("CertificateId") or "",
        certificate_thumbprint=entity.get("CertificateThumbprint") or "",
        delivery=entity.get("Delivery") or "",
    )


def _as_created(record: SubscriptionRecord, pending: PendingCreation) -> SubscriptionRecord:
    """The record as it is about to be saved: Graph created ``pending``'s subscription for it."""
    return replace(
        record,
        subscription_id=pending.subscription_id,
        client_state=pending.client_state,
        status=ACTIVE,
        expires_at=pending.expires_at or record.expires_at,
        certificate_id=pending.certificate_id,
        certificate_thumbprint=pending.certificate_thumbprint,
    )


def _usable_id(subscription_id: str) -> bool:
    return (
        0 < len(subscription_id) <= _MAX_KEY_LENGTH
        and subscription_id.isprintable()
        and not _FORBIDDEN_KEY_CHARACTERS.intersection(subscription_id)
    )


def partition_filter(partition: str, tenant: str | None) -> str:
    """The rows of ``partition``; with ``tenant``, only those keyed within that tenant."""
    where = f"PartitionKey eq {quote_filter(partition)}"
    return f"{where} and {prefix_filter('RowKey', scope_prefix(tenant))}" if tenant else where


class SubscriptionStore:
    """Subscription records and their id rows in one table.

    With ``tenant`` (a multi-tenant deployment's reconciler of one tenant), ``list`` and the
    pending rows hold only that tenant's; point reads by key or id find any record.
    """

    def __init__(self, client: TableClient, clock: Callable[[], datetime] = utcnow, tenant: str | None = None) -> None:
        self._client = client
        self._clock = clock
        self._tenant = tenant
        self.pending = PendingCreations(client, tenant)

    async def setup(self) -> None:
        """Create the table if needed."""
        await ensure_table(self._client)

    async def list(self) -> list[SubscriptionRecord]:
        """Every stored record (of the store's tenant, if it has one)."""
        query = self._client.query_entities(partition_filter(PARTITION, self._tenant))
        return [_from_entity(entity) async for entity in query]

    async def secret(self, subscription_id: str) -> str | None:
        """The clientState of Graph subscription ``subscription_id``, None if unknown (see ``subscription_secret``)."""
        found = await self.subscription_secret(subscription_id)
        return found.client_state if found is not None else None

    async def subscription_secret(self, subscription_id: str) -> SubscriptionSecret | None:
        """The clientState of Graph subscription ``subscription_id`` (one point read), None if unknown.

        An id without its row may belong to a creation Graph has just answered: a pending row
        naming it gives its clientState; while a POST is still in flight, no unknown id can be
        called unknown, so SubscriptionPendingError asks the caller to answer 503 (Graph retries).
        """
        entity = await self._id_row(subscription_id)
        if entity is not None:
            state = str(entity.get("ClientState") or "")
            return SubscriptionSecret(state, scope_of(str(entity.get("RecordKey") or ""))) if state else None
        if not _usable_id(subscription_id):
            return None
        creations = await self.pending.all()
        for pending in creations:
            if pending.subscription_id == subscription_id:
                return SubscriptionSecret(pending.client_state, scope_of(pending.key)) if pending.client_state else None
        now = self._clock()
        if any(pending.in_flight(now) for pending in creations):
            raise SubscriptionPendingError("a subscription is being created: its id may not be recorded yet")
        return None

    async def find(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record holding Graph subscription ``subscription_id``, if any (two point reads).

        A subscription Graph created whose record does not name it yet (its save is under way,
        or a crash came first) is found through its pending row, as the record it is becoming.
        """
        pointer = await self._id_row(subscription_id)
        if pointer is not None and pointer.get("RecordKey"):
            record = await self._record(pointer["RecordKey"])
            if record is None or record.subscription_id == subscription_id:
                return record
            # A row left by a crash may point at a record that has moved on to another id.
            pending = await self.pending.get(record.key)
            named = pending is not None and pending.subscription_id == subscription_id
            return _as_created(record, pending) if pending is not None and named else None
        if pointer is not None or not _usable_id(subscription_id):
            return None
        for pending in await self.pending.all():
            if pending.subscription_id == subscription_id:
                record = await self._record(pending.key)
                return _as_created(record, pending) if record is not None else None
        return None

    async def _record(self, key: str) -> SubscriptionRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _from_entity(await self._client.get_entity(PARTITION, key))
        except ResourceNotFoundError:
            return None

    async def save(self, record: SubscriptionRecord) -> None:
        """Insert or replace a record; its id row is written first, so the id is findable once the record names it."""
        from azure.data.tables import UpdateMode

        if record.subscription_id:
            pointer = {
                "PartitionKey": BY_ID,
                "RowKey": record.subscription_id,
                "RecordKey": record.key,
                "ClientState": record.client_state,
            }
            await self._client.upsert_entity(pointer, mode=UpdateMode.REPLACE)
        await self._client.upsert_entity(_to_entity(record), mode=UpdateMode.REPLACE)

    async def backfill(self) -> int:
        """Write the id rows missing for records saved before id rows existed; return how many."""
        from azure.data.tables import UpdateMode

        query = self._client.query_entities(
            partition_filter(PARTITION, self._tenant), select=["RowKey", "SubscriptionId", "ClientState", "Indexed"]
        )
        missing = [e async for e in query if e.get("SubscriptionId") and not e.get("Indexed")]
        for entity in missing:
            pointer = {
                "PartitionKey": BY_ID,
                "RowKey": entity["SubscriptionId"],
                "RecordKey": entity["RowKey"],
                "ClientState": entity["ClientState"],
            }
            await self._client.upsert_entity(pointer, mode=UpdateMode.REPLACE)
            marked = {"PartitionKey": PARTITION, "RowKey": entity["RowKey"], "Indexed": True}
            await self._client.upsert_entity(marked, mode=UpdateMode.MERGE)
        return len(missing)

    async def mark_notified(self, key: str, at: datetime) -> None:
        """Record that a notification for record ``key`` arrived at ``at`` (for `graphhooks subscriptions list`)."""
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": NOTIFIED, "RowKey": key, "At": at}
        await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def last_notified(self) -> dict[str, datetime]:
        """Each record key's last notification time, as far as recorded."""
        query = self._client.query_entities(f"PartitionKey eq {quote_filter(NOTIFIED)}", select=["RowKey", "At"])
        return {entity["RowKey"]: entity["At"] async for entity in query if entity.get("At")}

    async def retire(self, subscription_id: str) -> None:
        """Remove the id row of a subscription that no record names any more; a missing one is fine."""
        if subscription_id and _usable_id(subscription_id):
            await self._client.delete_entity(BY_ID, subscription_id)

    async def delete(self, key: str, subscription_id: str = "") -> None:
        """Remove a record, then the id row of its subscription, any creation of it and its last notification time."""
        await self._client.delete_entity(PARTITION, key)
        await self.retire(subscription_id)
        await self.pending.settle(key)
        await self._client.delete_entity(NOTIFIED, key)

    async def _id_row(self, subscription_id: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        if not _usable_id(subscription_id):
            return None
        try:
            return await self._client.get_entity(BY_ID, subscription_id)
        except ResourceNotFoundError:
            return None  # unknown id, or no table yet
