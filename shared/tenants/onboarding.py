"""Registering a tenant that consented, and asking for its subscriptions at once.

Both the consent route and ``graphhooks tenants add`` end with one message on
``graph-notifications``: an envelope of source ``tenant`` naming the tenant, which the queue
trigger turns into that tenant's reconcile, so its subscriptions are created without
waiting for the renew tick. The message is only a head start: a tenant registered as
active is reconciled by the next tick anyway, so a failed send loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import TenantConflictError, TenantRemovingError
from shared.model.notifications import Envelope
from shared.model.tenant import ACTIVE, REMOVING, Tenant, new_tenant

if TYPE_CHECKING:
    from shared.queues.message_queue import MessageQueue
    from shared.stores.tenants import TenantStore

# The envelope source the queue trigger reads as "reconcile this tenant now".
TENANT_SOURCE = "tenant"
# A consent racing another write of the same row (a suspension, a second consent) reads again this often.
SAVE_ATTEMPTS = 3


@dataclass(frozen=True)
class Registration:
    """What a consent did to the row: ``added``, ``activated`` (it was pending or suspended) or ``unchanged``."""

    tenant: Tenant
    outcome: str


def tenant_envelope(tenant_id: str, now: datetime) -> str:
    """The queue message that asks for one tenant's reconcile."""
    return Envelope(source=TENANT_SOURCE, received_at=now, items=[{"tenantId": tenant_id}]).to_json()


async def schedule(queue: MessageQueue, tenant_id: str, now: datetime) -> None:
    """Ask for the tenant's reconcile now; StorageUnavailableError if the queue write failed."""
    await queue.send(tenant_envelope(tenant_id, now))


async def register_consent(store: TenantStore, tenant_id: str, name: str, now: datetime) -> Registration:
    """Make the tenant active after its admin consented: added if new, activated if pending or suspended.

    ``tenant_id`` is canonical already. A tenant being removed raises TenantRemovingError, and
    nothing is written; an active one is left as it is. A name is kept once set: a consent
    link's name fills in only a tenant that has none.
    """
    for _ in range(SAVE_ATTEMPTS):
        found = await store.get(tenant_id)
        if found is None:
            tenant = new_tenant(tenant_id, name, now, status=ACTIVE)
            if await store.add(tenant):
                return Registration(tenant, "added")
            continue  # registered meanwhile (a second consent, the CLI): read it
        current = found.tenant
        if current.status == REMOVING:
            raise TenantRemovingError(f"tenant {tenant_id} is being removed")
        if current.status == ACTIVE:
            return Registration(current, "unchanged")
        tenant = current.activated(now)
        if name and not tenant.name:
            tenant = replace(tenant, name=name)
        try:
            await store.save(tenant, found.etag)
        except TenantConflictError:
            continue
        return Registration(tenant, "activated")
    raise TenantConflictError(f"tenant {tenant_id} kept changing while its consent was registered")
