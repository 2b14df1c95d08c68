"""A fleet of tenants for the multi-tenant benchmarks: ids, onboarding (simulator and table), timed ticks.

Each tenant is registered as the functional tests do: consented in the simulator (its
control API's ``POST /tenants``), its drives created there under ``?tenant=``, and a row in
table ``tenants`` with status ``active``. Every tenant has drives of the same ids, so the
GRAPH_SUBSCRIPTIONS templates apply to each of them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from devtools.simclient import SimControl
from shared.clock import utcnow
from shared.model.names import TENANTS_TABLE
from shared.model.tenant import ACTIVE, new_tenant
from shared.stores.clients import table_client
from shared.stores.tenants import TenantStore

MULTI = {"TENANT_MODE": "multi"}
GATE = 32  # control calls and table writes at once while seeding


def tenant_ids(count: int, family: int) -> list[str]:
    """``count`` tenant ids (GUIDs), distinct per ``family`` so two stacks' tenants never look alike."""
    return [str(uuid.UUID(int=(0x7E0A << 112) | (family << 64) | (n + 1))) for n in range(count)]


def in_tenant(path: str, tenant: str) -> str:
    """A control API path that works on ``tenant``'s data."""
    return f"{path}{'&' if '?' in path else '?'}tenant={quote(tenant, safe='')}"


async def onboard(control: SimControl, connection: str, tenants: list[str], drives: list[str]) -> None:
    """Consent every tenant in the simulator, create its drives there, and register it active in table ``tenants``."""
    gate = asyncio.Semaphore(GATE)

    async def in_sim(tenant: str) -> None:
        async with gate:
            await control.call("POST", "/tenants", {"tenant": tenant, "consented": True})
            for drive in drives:
                await control.call("POST", in_tenant("/drives", tenant), {"id": drive})

    await asyncio.gather(*(in_sim(t) for t in tenants))
    now = utcnow()
    async with table_client(connection, TENANTS_TABLE) as client:
        store = TenantStore(client)
        await store.setup()

        async def register(tenant: str) -> None:
            async with gate:
                await store.add(new_tenant(tenant, f"bench {tenant[-6:]}", now, status=ACTIVE))

        await asyncio.gather(*(register(t) for t in tenants))


async def sim_tenants(control: SimControl) -> dict[str, dict[str, Any]]:
    """The simulator's tenants by id (lower case), with their counters once used."""
    found = await control.call("GET", "/tenants")
    return {str(t["tenant"]).lower(): t for t in found["value"]}


@dataclass
class TenantTimes:
    """When each tenant's reconcile began and ended within a tick, and what it reported."""

    started: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


def time_reconcilers(renewal: Any, times: TenantTimes) -> None:
    """Have every tenant's reconcile note its start, end and report in ``times`` (the tick's own path, observed).

    The renewal's ``reconciler_of`` is wrapped, as tests/functional/test_tenants.py reaches it;
    nothing in the product changes.
    """
    original: Callable[[str], Any] = renewal._reconciler_of
    wrapped: set[str] = set()

    def reconciler_of(tenant: str) -> Any:
        reconciler = original(tenant)
        if tenant not in wrapped:
            wrapped.add(tenant)
            real = reconciler.reconcile

            async def timed(*args: Any, **kwargs: Any) -> Any:
                times.started.setdefault(tenant, time.monotonic())
                try:
                    report = await real(*args, **kwargs)
                    times.created[tenant] = times.created.get(tenant, 0) + report.created
                    times.failed[tenant] = times.failed.get(tenant, 0) + report.failed
                    return report
                finally:
                    times.done[tenant] = time.monotonic()

            reconciler.reconcile = timed
        return reconciler

    renewal._reconciler_of = reconciler_of
