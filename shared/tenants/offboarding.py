"""Removing a tenant: its subscriptions at Graph and everything kept for it, then one ``tenant.removed`` event.

`graphhooks tenants remove` and a tenant suspended past TENANT_SUSPENDED_REMOVE_AFTER
both come here. The tenant is marked ``removing`` first, and every step deletes what
is still there, so a removal cut short by a crash is finished by the next tick. The
event is sent before the tenant's row goes: a crash between the two sends it again,
under the same id (at least once, never under two ids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from shared.errors import TenantConflictError
from shared.model.events import tenant_removed
from shared.model.tenant import REMOVING, Tenant
from shared.reconcile.reconciler import Reconciler
from shared.stores.desired import DesiredStore
from shared.stores.members import MemberStore
from shared.stores.tenants import TenantStore

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where change events go (graph-changes, then the sinks' queues)."""

    async def send(self, text: str, delay_seconds: float = 0) -> None: ...


class Offboarding:
    """Removes one tenant, resumably."""

    def __init__(
        self,
        store: TenantStore,
        reconciler_of: Callable[[str], Reconciler],
        changes: EventSink,
        desired: DesiredStore | None = None,
        members: MemberStore | None = None,
    ) -> None:
        self._store = store
        self._reconciler_of = reconciler_of
        self._changes = changes
        self._desired = desired
        self._members = members

    async def remove(self, tenant: Tenant, now: datetime) -> int:
        """Remove ``tenant`` and all it left; return how many subscriptions went."""
        tenant = await self._mark(tenant, now)
        reconciler = self._reconciler_of(tenant.tenant_id)
        records = await reconciler.records()
        for record in records:
            # Graph may no longer answer for this tenant (consent revoked): the records go regardless,
            # and a subscription left at Graph lapses at its expiry, its notifications refused meanwhile.
            await reconciler.forsake(record)
        await reconciler.settle_pending()
        if self._desired is not None:
            await self._desired.forget_tenant(tenant.tenant_id)
        if self._members is not None:
            await self._members.forget_tenant(tenant.tenant_id)
        await self._changes.send(tenant_removed(tenant, now).to_json())
        await self._store.delete(tenant.tenant_id)
        log.info("tenant %s removed (%d subscriptions)", tenant.tenant_id, len(records))
        return len(records)

    async def _mark(self, tenant: Tenant, now: datetime) -> Tenant:
        """The tenant as ``removing``, saved, so a crash from here on resumes the removal."""
        if tenant.status == REMOVING:
            return tenant
        stored = await self._store.get(tenant.tenant_id)
        if stored is None:
            return tenant.removing(now)
        removing = stored.tenant.removing(now)
        try:
            await self._store.save(removing, stored.etag)
        except TenantConflictError:
            # Changed meanwhile (a consent, a suspension): removal is still what was asked, so it wins.
            await self._store.save(removing, None)
        return removing
