"""Creations in flight: what this app is creating at Graph, recorded before Graph is asked.

Graph validates the notification URL while it creates a subscription, then may notify
as soon as it answers, before this app has saved the new id. So before each POST a
row (partition ``pending`` of the subscriptions table, keyed by the record's key)
records the attempt's clientState; once Graph answers, the row gets the new id; once
the record names it, the row goes. Meanwhile:

- the HTTP path knows an id a row holds (its clientState), and answers 503, never 202,
  for an unknown id while a POST is in flight (see ``SubscriptionStore.secret``);
- a crash after Graph answered leaves a row naming the subscription, which the next
  attempt adopts instead of creating another.

The partition holds at most one row per record, and usually none.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.model.tenant import scope_prefix
from shared.stores.tables import prefix_filter, quote_filter

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PENDING = "pending"
# A POST in flight can last this long: two handshakes of 10 s, and the gateway's retries of a
# throttled call (Retry-After up to 60 s each). An older row without an id is an attempt that died.
PENDING_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class PendingCreation:
    """One creation: its clientState from the start; Graph's id, the expiry and certificate once Graph answered."""

    key: str
    client_state: str
    started_at: datetime
    subscription_id: str = ""
    expires_at: datetime | None = None
    certificate_id: str = ""
    certificate_thumbprint: str = ""
    # The row's version as read or written: settling it removes exactly this version.
    etag: str = field(default="", compare=False)

    def in_flight(self, now: datetime) -> bool:
        """Graph may be creating it right now: asked recently, and no answer recorded."""
        return not self.subscription_id and now - self.started_at < PENDING_GRACE


def _to_entity(pending: PendingCreation) -> dict[str, Any]:
    return {
        "PartitionKey": PENDING,
        "RowKey": pending.key,
        "ClientState": pending.client_state,
        "StartedAt": pending.started_at,
        "SubscriptionId": pending.subscription_id,
        "ExpiresAt": pending.expires_at,
        "CertificateId": pending.certificate_id,
        "CertificateThumbprint": pending.certificate_thumbprint,
    }


def _from_entity(entity: Any) -> PendingCreation:
    metadata = getattr(entity, "metadata", None) or {}
    return PendingCreation(
        etag=str(metadata.get("etag") or ""),
        key=entity["RowKey"],
        client_state=str(entity.get("ClientState") or ""),
        started_at=entity["StartedAt"],
        subscription_id=str(entity.get("SubscriptionId") or ""),
        expires_at=entity.get("ExpiresAt"),
        certificate_id=str(entity.get("CertificateId") or ""),
        certificate_thumbprint=str(entity.get("CertificateThumbprint") or ""),
    )


class PendingCreations:
    """The ``pending`` rows of the subscriptions table."""

    def __init__(self, client: TableClient, tenant: str | None = None) -> None:
        self._client = client
        # A tenant's reconciler sees only its own tenant's creations.
        self._tenant = tenant

    async def record(self, pending: PendingCreation) -> PendingCreation:
        """Write (or replace) the row of ``pending.key``: before the POST, and again with Graph's answer."""
        from azure.data.tables import UpdateMode

        written = await self._client.upsert_entity(_to_entity(pending), mode=UpdateMode.REPLACE)
        return replace(pending, etag=str((written or {}).get("etag") or ""))

    async def get(self, key: str) -> PendingCreation | None:
        """The creation of record ``key`` (one point read), if any."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _from_entity(await self._client.get_entity(PENDING, key))
        except ResourceNotFoundError:
            return None

    async def all(self) -> list[PendingCreation]:
        """Every row (one small partition: at most one per record, usually none)."""
        from azure.core.exceptions import ResourceNotFoundError

        where = f"PartitionKey eq {quote_filter(PENDING)}"
        if self._tenant:
            where += f" and {prefix_filter('RowKey', scope_prefix(self._tenant))}"
        query = self._client.query_entities(where)
        try:
            return [_from_entity(entity) async for entity in query]
        except ResourceNotFoundError:
            return []  # no table yet

    async def settle(self, pending: PendingCreation | str) -> None:
        """Remove a row once its record names the subscription (or its attempt is over); a missing one is fine.

        Given a PendingCreation read or written with its version, only that version goes: a
        creation another instance began since then keeps its row. Given a key, the row goes.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        if isinstance(pending, str):
            await self._client.delete_entity(PENDING, pending)
            return
        condition = MatchConditions.IfNotModified if pending.etag else MatchConditions.Unconditionally
        # A ResourceModifiedError: another attempt wrote the row since, and settles it itself.
        with suppress(ResourceModifiedError):
            await self._client.delete_entity(PENDING, pending.key, etag=pending.etag or None, match_condition=condition)
