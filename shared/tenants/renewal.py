"""The renew timer's tick in a multi-tenant deployment: each tenant on its own, none waiting on another.

Every registered tenant is visited: a served one has its token checked, then its
subscriptions reconciled against the templates that apply to it; a suspended one has
its token tried again hourly and, once it works, is resumed (its subscriptions made
whole and every resource resynced, since notifications were dropped meanwhile); one
being removed, or suspended past TENANT_SUSPENDED_REMOVE_AFTER, is offboarded. Tenants
run a few at a time, each within a deadline, so a tenant that is slow, throttled or
failing delays no other and never holds up the tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import telemetry
from shared.errors import GraphRequestError
from shared.model.resources import DesiredSubscription, for_tenant
from shared.model.subscription import SubscriptionRecord
from shared.model.tenant import PENDING, REMOVING, SUSPENDED, Tenant, due_for_removal, due_for_retry
from shared.reconcile.reconciler import Reconciler
from shared.stores.tenants import TenantStore
from shared.sync.synchronizer import Synchronizer
from shared.tenants.access import TenantAccess

log = logging.getLogger(__name__)
# Tenants worked on at once, and how long one tenant's share of a tick may last.
CONCURRENCY = 16
TENANT_DEADLINE_SECONDS = 120.0


@dataclass
class TickReport:
    """What one tick did, tenant by tenant (counts)."""

    reconciled: int = 0
    suspended: int = 0
    resumed: int = 0
    removed: int = 0
    failed: int = 0
    timed_out: int = 0


class TenantRenewal:
    """Visits every tenant once per tick."""

    def __init__(
        self,
        store: TenantStore,
        access: TenantAccess,
        reconciler_of: Callable[[str], Reconciler],
        synchronizer: Synchronizer,
        offboard: Callable[[Tenant, datetime], Awaitable[object]],
        remove_after: timedelta | None,
        concurrency: int = CONCURRENCY,
        deadline: float = TENANT_DEADLINE_SECONDS,
    ) -> None:
        self._store = store
        self._access = access
        self._reconciler_of = reconciler_of
        self._sync = synchronizer
        self._offboard = offboard
        self._remove_after = remove_after
        self._gate = asyncio.Semaphore(concurrency)
        self._deadline = deadline

    async def tick(self, desired: Sequence[DesiredSubscription], now: datetime) -> TickReport:
        """Visit every registered tenant; one's failure or slowness is counted, never raised."""
        report = TickReport()
        tenants = await self._store.list()
        await asyncio.gather(*(self._visit(tenant, desired, now, report) for tenant in tenants))
        log.info(
            "tenants: %d reconciled, %d suspended, %d resumed, %d removed, %d failed, %d past the deadline",
            report.reconciled,
            report.suspended,
            report.resumed,
            report.removed,
            report.failed,
            report.timed_out,
        )
        return report

    async def onboard(self, tenant_id: str, desired: Sequence[DesiredSubscription], now: datetime) -> None:
        """Reconcile one tenant at once (admin consent, `graphhooks tenants add`), without waiting for the tick."""
        self._access.forget(tenant_id)  # this instance may have it cached as suspended
        stored = await self._store.get(tenant_id)
        if stored is None or not stored.tenant.served:
            log.info("tenant %s is not served: nothing to start", tenant_id)
            return
        reconciler = self._reconciler_of(tenant_id)
        # A tenant consenting again may have been suspended: what it had is made whole and resynced, as
        # on the hourly retry. A new tenant has nothing yet, and its new subscriptions start as usual.
        known = await reconciler.records()
        report = TickReport()
        await self._serve(stored.tenant, desired, now, report, list_remote=bool(known))
        if known and report.reconciled:
            # Read again: a subscription the reconcile re-created is resynced under its new id.
            keys = {record.key for record in known}
            await self._resync(reconciler, [r for r in await reconciler.records() if r.key in keys])

    async def _visit(
        self, tenant: Tenant, desired: Sequence[DesiredSubscription], now: datetime, report: TickReport
    ) -> None:
        async with self._gate:
            try:
                await asyncio.wait_for(self._one(tenant, desired, now, report), self._deadline)
            except TimeoutError:
                report.timed_out += 1
                log.warning(
                    "tenant %s: its share of the tick ran past %.0f s; it goes on next tick",
                    tenant.tenant_id,
                    self._deadline,
                )
            except Exception as exc:  # noqa: BLE001 - one tenant's failure must not touch another's
                report.failed += 1
                log.error("tenant %s: tick failed: %s", tenant.tenant_id, type(exc).__name__)

    async def _one(
        self, tenant: Tenant, desired: Sequence[DesiredSubscription], now: datetime, report: TickReport
    ) -> None:
        if tenant.status == REMOVING or due_for_removal(tenant, now, self._remove_after):
            await self._offboard(tenant, now)
            report.removed += 1
        elif tenant.status == SUSPENDED:
            if due_for_retry(tenant, now):
                await self._retry(tenant, desired, now, report)
        else:
            await self._serve(tenant, desired, now, report)

    async def _serve(
        self,
        tenant: Tenant,
        desired: Sequence[DesiredSubscription],
        now: datetime,
        report: TickReport,
        list_remote: bool | None = None,
    ) -> None:
        code = await self._access.check(tenant.tenant_id)
        if code is not None:
            await self._access.suspend(tenant.tenant_id, code, now)
            report.suspended += 1
            return
        if tenant.status == PENDING:
            await self._access.activate(tenant.tenant_id, now)
        try:
            reconciler = self._reconciler_of(tenant.tenant_id)
            await reconciler.reconcile(for_tenant(desired, tenant.tenant_id), now, list_remote=list_remote)
        except GraphRequestError as exc:
            if exc.graph_status not in (401, 403):
                raise
            # Graph refused a cached token: is it consent that went, or only this token? Ask the authority.
            code = await self._access.check(tenant.tenant_id, fresh=True)
            if code is None:
                raise
            await self._access.suspend(tenant.tenant_id, code, now)
            report.suspended += 1
            return
        report.reconciled += 1

    async def _retry(
        self, tenant: Tenant, desired: Sequence[DesiredSubscription], now: datetime, report: TickReport
    ) -> None:
        code = await self._access.check(tenant.tenant_id)
        if code is not None:
            await self._access.suspend(tenant.tenant_id, code, now)  # records this try's time
            return
        if await self._access.activate(tenant.tenant_id, now) is None:
            return
        log.info("tenant %s resumed: its token works again", tenant.tenant_id)
        telemetry.count(telemetry.TENANTS_RESUMED, 1)
        reconciler = self._reconciler_of(tenant.tenant_id)
        # Graph's view is read: subscriptions that lapsed while the tenant refused the app are re-created.
        await reconciler.reconcile(for_tenant(desired, tenant.tenant_id), now, list_remote=True)
        # Notifications were dropped while it was suspended: every resource is enumerated again.
        await self._resync(reconciler, await reconciler.records())
        report.resumed += 1

    async def _resync(self, reconciler: Reconciler, records: Sequence[SubscriptionRecord]) -> None:
        """Turn each resource's cursor into a resync pass and ask for it (one per resource)."""
        for record in records:
            if record.subscription_id and await self._sync.resync(record.resource, record.tenant):
                await reconciler.request_sync(record)
