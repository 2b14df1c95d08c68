"""Whether a tenant still lets the app in: its status, cached briefly, and suspension when its token is refused.

A tenant whose admin revoked consent, or that deleted the app, answers every token
request with an AADSTS error (shared/model/tenant.py lost_access). It is suspended with
that code as its reason: its notifications are then dropped without a Graph call, and its
work stops until the timer finds its token works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from shared import telemetry
from shared.errors import TenantConflictError
from shared.model.tenant import Tenant, lost_access
from shared.stores.tenants import TenantStore

log = logging.getLogger(__name__)
# A tenant's status is read again after this long: a suspension reaches every instance within it.
STATUS_TTL_SECONDS = 60.0
# How long a "not served" answer is kept: a suspended tenant's notifications cost one point read this often.
NOT_SERVED_TTL_SECONDS = 5.0
# A tenant's last completed pass is written at most this often per instance (one small write).
PASS_NOTE_SECONDS = 60.0
# Tenants whose status is cached at once (a few dozen bytes each).
_CACHE_LIMIT = 10_000


class TenantAccess:
    """Tenant statuses for the queue trigger and the timer, and the suspension of a tenant that refuses tokens."""

    def __init__(
        self,
        store: TenantStore,
        token: Callable[[str, bool], Awaitable[None]],
        ttl: float = STATUS_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._token = token
        self._ttl = ttl
        self._monotonic = monotonic
        self._served: dict[str, tuple[bool, float]] = {}
        self._passes: dict[str, float] = {}  # tenant -> when this instance last recorded a pass of it

    async def served(self, tenant: str) -> bool:
        """True while ``tenant``'s work goes on (pending or active); False when suspended, removing or unknown."""
        cached = self._served.get(tenant)
        now = self._monotonic()
        # A "no" is kept briefly: a tenant that consents again is served by every instance within seconds.
        if cached is not None and now - cached[1] < (self._ttl if cached[0] else NOT_SERVED_TTL_SECONDS):
            return cached[0]
        stored = await self._store.get(tenant)
        served = stored is not None and stored.tenant.served
        if len(self._served) >= _CACHE_LIMIT:
            self._served.clear()
        self._served[tenant] = (served, now)
        return served

    async def check(self, tenant: str, fresh: bool = False) -> str | None:
        """Get the tenant's token; the AADSTS code when the tenant refused the app for good, else None.

        Any other failure (the authority unreachable, a timeout) is raised: it says nothing
        about consent, and the tenant stays as it is.
        """
        try:
            await self._token(tenant, fresh)
        except Exception as exc:
            code = refused(exc)
            if code is None:
                raise
            return code
        return None

    async def suspend(self, tenant: str, reason: str, now: datetime) -> Tenant | None:
        """Mark ``tenant`` suspended with ``reason`` (an AADSTS code); None when it is gone or being removed."""
        for _ in range(3):
            stored = await self._store.get(tenant)
            if stored is None or stored.tenant.status not in ("pending", "active", "suspended"):
                return None
            suspended = stored.tenant.suspended(reason, now)
            try:
                await self._store.save(suspended, stored.etag)
            except TenantConflictError:
                continue
            if stored.tenant.status != "suspended":
                log.warning("tenant %s suspended: its token was refused (%s)", tenant, reason)
                telemetry.count(telemetry.TENANTS_SUSPENDED, 1, reason=reason)
            self._served[tenant] = (False, self._monotonic())
            return suspended
        return None

    async def activate(self, tenant: str, now: datetime) -> Tenant | None:
        """Mark ``tenant`` active again (its token works); None when it is gone or being removed."""
        for _ in range(3):
            stored = await self._store.get(tenant)
            if stored is None or stored.tenant.status == "removing":
                return None
            active = stored.tenant.activated(now)
            try:
                await self._store.save(active, stored.etag)
            except TenantConflictError:
                continue
            self._served[tenant] = (True, self._monotonic())
            return active
        return None

    async def mark_pass(self, tenant: str, at: datetime) -> None:
        """Record that a delta pass of ``tenant`` completed (shown by `graphhooks tenants list`), once a minute."""
        now = self._monotonic()
        last = self._passes.get(tenant)
        if last is not None and now - last < PASS_NOTE_SECONDS:
            return
        if len(self._passes) >= _CACHE_LIMIT:
            self._passes.clear()
        self._passes[tenant] = now
        try:
            await self._store.mark_pass(tenant, at)
        except Exception as exc:  # noqa: BLE001 - an operator's figure: never worth failing a message for
            log.warning("last pass of tenant %s not recorded: %s", tenant, type(exc).__name__)

    def forget(self, tenant: str) -> None:
        """Drop the cached status (after a change made elsewhere)."""
        self._served.pop(tenant, None)


def refused(exc: BaseException) -> str | None:
    """The AADSTS code meaning lost consent in ``exc`` or the errors it was raised from, else None."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        code = lost_access(str(seen))
        if code is not None:
            return code
        seen = seen.__cause__ or seen.__context__
    return None
