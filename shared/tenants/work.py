"""What the queue trigger asks about tenants: is one served, start one now, and was a failure a lost consent."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from shared.errors import GraphRequestError, TransientGraphError
from shared.model.resources import DesiredSubscription
from shared.tenants.access import TenantAccess, refused
from shared.tenants.renewal import TenantRenewal

# Passes of one tenant at once on one instance: the worker's other slots stay for the other tenants.
MAX_TENANT_PASSES = 4
# How long a tenant's work is put off when all its slots are busy, or when it throttles without a hint.
BUSY_DELAY_SECONDS = 2.0
DEFAULT_THROTTLE_SECONDS = 30.0
# A throttled tenant's notification put off again waits this long, doubled at each return (up to the cap).
THROTTLE_BACKOFF_SECONDS = 5.0
# A Retry-After is honoured up to this; the message's own deferrals cover a longer storm.
MAX_THROTTLE_SECONDS = 300.0


class TenantWork:
    """The queue trigger's view of the tenants (TENANT_MODE=multi).

    Graph throttles per app and tenant, so one tenant's trouble is kept its own: a tenant
    that answered 429 or 5xx has its notifications put off (re-queued with a delay, no
    Graph call) until its Retry-After has passed, and no tenant runs more than
    MAX_TENANT_PASSES passes at once on an instance. Neither holds a worker that another
    tenant's notification could use, and neither spends a message's attempts.
    """

    def __init__(
        self,
        access: TenantAccess,
        renewal: TenantRenewal,
        desired: Callable[[], Awaitable[Sequence[DesiredSubscription]]],
        monotonic: Callable[[], float] = time.monotonic,
        max_passes: int = MAX_TENANT_PASSES,
    ) -> None:
        self._access = access
        self._renewal = renewal
        self._desired = desired
        self._monotonic = monotonic
        self._max_passes = max_passes
        self._blocked: dict[str, float] = {}  # tenant -> monotonic time its throttling ends
        self._busy: dict[str, int] = {}

    def hold(self, tenant: str, deferrals: int = 0) -> float | None:
        """Seconds to put ``tenant``'s work off (throttled, or all its slots busy); None to go ahead.

        A throttled tenant's notification is put off at least until the Retry-After has passed,
        and longer each time it comes back (``deferrals``): over a long storm each one returns
        a few times, not every Retry-After, so the queue is not churned at the other tenants' cost.
        """
        until = self._blocked.get(tenant)
        if until is not None:
            left = until - self._monotonic()
            if left > 0:
                return max(left, min(THROTTLE_BACKOFF_SECONDS * (1 << min(deferrals, 16)), MAX_THROTTLE_SECONDS))
            del self._blocked[tenant]
        if self._busy.get(tenant, 0) >= self._max_passes:
            return BUSY_DELAY_SECONDS
        return None

    @contextmanager
    def running(self, tenant: str) -> Iterator[None]:
        """Count one pass of ``tenant`` while it runs."""
        self._busy[tenant] = self._busy.get(tenant, 0) + 1
        try:
            yield
        finally:
            left = self._busy[tenant] - 1
            if left:
                self._busy[tenant] = left
            else:
                del self._busy[tenant]

    def throttled(self, tenant: str, error: BaseException) -> float | None:
        """When ``error`` is the tenant's throttling (429, 503), hold its work for the hint and return it; else None."""
        if not isinstance(error, TransientGraphError) or error.graph_status not in (429, 503):
            return None
        seconds = min(error.retry_after or DEFAULT_THROTTLE_SECONDS, MAX_THROTTLE_SECONDS)
        self._blocked[tenant] = max(self._blocked.get(tenant, 0.0), self._monotonic() + seconds)
        return seconds

    async def served(self, tenant: str) -> bool:
        """True while the tenant's notifications are worth a Graph call (cached briefly)."""
        return await self._access.served(tenant)

    async def passed(self, tenant: str, now: datetime) -> None:
        """Note that a pass of ``tenant`` completed (at most once a minute per instance)."""
        await self._access.mark_pass(tenant, now)

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
