"""What the queue trigger asks about tenants: is one served, start one now, and was a failure a lost consent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from shared.errors import GraphRequestError
from shared.model.resources import DesiredSubscription
from shared.tenants.access import TenantAccess, refused
from shared.tenants.renewal import TenantRenewal


class TenantWork:
    """The queue trigger's view of the tenants (TENANT_MODE=multi)."""

    def __init__(
        self,
        access: TenantAccess,
        renewal: TenantRenewal,
        desired: Callable[[], Awaitable[Sequence[DesiredSubscription]]],
    ) -> None:
        self._access = access
        self._renewal = renewal
        self._desired = desired

    async def served(self, tenant: str) -> bool:
        """True while the tenant's notifications are worth a Graph call (cached briefly)."""
        return await self._access.served(tenant)

    async def onboard(self, tenant: str, now: datetime) -> None:
        """Create the tenant's subscriptions now (after an admin consent or `graphhooks tenants add`)."""
        await self._renewal.onboard(tenant, await self._desired(), now)

    async def lost(self, tenant: str, error: BaseException, now: datetime) -> bool:
        """True, with the tenant suspended, when ``error`` says the tenant refused the app's token for good."""
        if not tenant:
            return False
        code = refused(error)
        if code is None and isinstance(error, GraphRequestError) and error.graph_status in (401, 403):
            # Graph refused a token cached from before a revocation: the authority says whether consent went.
            code = await self._access.check(tenant, fresh=True)
        if code is None:
            return False
        await self._access.suspend(tenant, code, now)
        return True
