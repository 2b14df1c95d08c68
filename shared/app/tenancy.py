"""TENANT_MODE=multi's objects: the tenants table, access checks, the per-tenant tick and offboarding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from shared.app.clients import PATIENT_TABLE
from shared.app.lazy import Owned
from shared.config.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.app.tenant_graphs import TenantGraphs
    from shared.model.resources import DesiredSubscription
    from shared.reconcile.reconciler import Reconciler
    from shared.stores.desired import DesiredStore
    from shared.stores.members import MemberStore
    from shared.sync.fanout import EventFanout
    from shared.sync.synchronizer import Synchronizer
    from shared.tenants.renewal import TenantRenewal
    from shared.tenants.work import TenantWork


async def build_tenancy(
    settings: Settings,
    owned: Owned,
    token: AsyncTokenCredential | None,
    graphs: TenantGraphs,
    synchronizer: Synchronizer,
    changes: EventFanout,
    desired_store: DesiredStore,
    members: MemberStore,
    desired: Callable[[], Awaitable[Sequence[DesiredSubscription]]],
) -> tuple[TenantRenewal, TenantWork]:
    """The per-tenant tick and the queue trigger's view of the tenants."""
    from shared.model.names import TENANTS_TABLE
    from shared.stores.clients import table_client
    from shared.stores.tenants import TenantStore
    from shared.tenants.access import TenantAccess
    from shared.tenants.offboarding import Offboarding
    from shared.tenants.renewal import TenantRenewal
    from shared.tenants.work import TenantWork

    store = TenantStore(owned.own(table_client(settings.storage_connection, TENANTS_TABLE, token, **PATIENT_TABLE)))
    await store.setup()
    access = TenantAccess(store, graphs.token)

    def reconciler_of(tenant: str) -> Reconciler:
        return graphs.graph(tenant).reconciler

    offboarding = Offboarding(store, reconciler_of, changes, desired_store, members)
    renewal = TenantRenewal(
        store, access, reconciler_of, synchronizer, offboarding.remove, settings.suspended_remove_after
    )
    return renewal, TenantWork(access, renewal, desired)
