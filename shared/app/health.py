"""GET /api/health's monitor, with its own quick-retry clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.app.clients import FAST, FAST_TABLE, changes_client, refusal_flusher, storage_token
from shared.app.lazy import Owned
from shared.config.settings import Settings
from shared.model.names import CURSORS_TABLE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE

# Suspended tenants named by /api/health at most (tenants list has them all).
MAX_SUSPENDED_SHOWN = 100

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.health import HealthMonitor


@dataclass(frozen=True)
class Health:
    """GET /api/health's monitor and the clients it owns."""

    monitor: HealthMonitor
    resources: Owned

    async def close(self) -> None:
        """Close the storage clients and the Graph credential."""
        await self.resources.close()


async def build_health(environ: Mapping[str, str]) -> Health:
    """The health checks' own clients: quick retries, since a probe waits for them."""
    from shared.app.credentials import build_client
    from shared.graph import graph_scope
    from shared.health import HealthMonitor, HealthProbe
    from shared.stores.clients import queue_client, table_client
    from shared.stores.subscriptions import SubscriptionStore

    settings = Settings.from_env(environ)
    telemetry.configure(environ)
    connection = settings.storage_connection
    owned = Owned()
    token = storage_token(connection, owned)
    # Quick retries: a probe reads the table through it.
    refusals = refusal_flusher(environ, owned, connection, token, options=FAST_TABLE)
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **FAST_TABLE)))
    cursors = owned.own(table_client(connection, CURSORS_TABLE, token, **FAST_TABLE))
    names = [settings.notifications_queue, f"{settings.notifications_queue}-poison"]
    queues = [owned.own(queue_client(connection, name, token, **FAST)) for name in names]
    queues.append(owned.own(changes_client(settings, token, owned, **FAST)))
    scope = graph_scope(settings.graph_base_url)

    async def expiries() -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [record.expires_at for record in await store.list()]
        except ResourceNotFoundError:
            return []  # no table yet: nothing subscribed so far

    tenants: Callable[[], Awaitable[Mapping[str, Any]]] | None = None
    if settings.multi_tenant:
        # Each tenant signs in at its own authority: their statuses stand for the one token of single mode.
        tenants = tenant_summary(owned.own(table_client(connection, TENANTS_TABLE, token, **FAST_TABLE)))

        async def graph_token() -> None:
            return None
    else:
        _, credential = build_client(settings)
        owned.own(credential)

        async def graph_token() -> None:
            await credential.get_token(scope)

    # The answering instance's own counts are flushed first; the others' are at most one flush interval old.
    probe = HealthProbe(graph_token, expiries, cursors, queues, refusals=refusals.totals, tenants=tenants)
    monitor = HealthMonitor(
        probe.snapshot,
        settings.health_cache_seconds,
        on_snapshot=lambda snapshot: telemetry.observe_depths(snapshot.queue_depths),
    )
    return Health(monitor, owned)


def tenant_summary(client: TableClient) -> Callable[[], Awaitable[Mapping[str, Any]]]:
    """Reads table tenants: how many in each status, and the suspended ones with their reason (up to 100)."""
    from shared.model.tenant import STATUSES, SUSPENDED
    from shared.stores.tenants import TenantStore

    store = TenantStore(client)

    async def summary() -> Mapping[str, Any]:
        from azure.core.exceptions import ResourceNotFoundError

        counts = dict.fromkeys(STATUSES, 0)
        suspended: list[dict[str, str]] = []
        try:
            async for tenant in store.all():
                counts[tenant.status] = counts.get(tenant.status, 0) + 1
                if tenant.status == SUSPENDED and len(suspended) < MAX_SUSPENDED_SHOWN:
                    suspended.append({"tenantId": tenant.tenant_id, "reason": tenant.reason})
        except ResourceNotFoundError:
            pass  # no table yet: no tenant so far
        return {"byStatus": counts, "suspended": suspended}

    return summary
