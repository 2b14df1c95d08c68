"""``graphhooks tenants``: the customer tenants a multi-tenant deployment serves (TENANT_MODE=multi).

Customers usually connect themselves through admin consent (``/api/consent/start``); ``add``
registers a tenant whose admin consented another way. ``remove`` only marks the tenant: the
renew timer deletes its subscriptions and everything kept for it, and can resume a removal
that a crash interrupted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shared.clock import format_time, utcnow
from shared.config.tenants import tenant_mode
from shared.errors import OperatorRequestError, StorageUnavailableError, TenantConflictError
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE
from shared.model.tenant import ACTIVE, REMOVING, SINGLE, SUSPENDED, Tenant, canonical_tenant_id, new_tenant, scope_of
from shared.queues.message_queue import MessageQueue
from shared.stores.subscriptions import SubscriptionStore
from shared.stores.tenants import TenantStore
from shared.tenants.onboarding import schedule

from .runtime import Session, console, failures, run, session
from .subscriptions import when

app = typer.Typer(help="Customer tenants (TENANT_MODE=multi): add, list, remove.")
SINGLE_MODE = (
    "this deployment serves one tenant (TENANT_MODE=single, GRAPH_TENANT_ID):"
    " tenants are managed only with TENANT_MODE=multi"
)
RESUME = (
    "it resumes when an administrator of the tenant consents again (the consent link, /api/consent/start),"
    " or by itself once its token works again: the renew timer retries it every hour"
)


def multi_tenant(current: Session) -> Session:
    """The session, once TENANT_MODE=multi is confirmed; every command refuses in single mode."""
    with failures():
        if tenant_mode(current.values) == SINGLE:
            raise OperatorRequestError(SINGLE_MODE)
    return current


@app.command("add")
def add(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id (a GUID), e.g. from the Entra admin center.")],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The name operators know it by.")] = "",
) -> None:
    """Register a tenant as active and ask for its subscriptions at once (its admin must have consented)."""
    current = multi_tenant(session(ctx))
    with failures():
        tenant = new_tenant(tenant_id, name, utcnow(), status=ACTIVE)  # a bad id or name: nothing written
    existing, scheduled = run(_add(current, tenant), "adding the tenant")
    if existing is None:
        console.print(f"added tenant {tenant.tenant_id}{_named(tenant)} as active")
        if scheduled:
            console.print("its subscriptions are being created now")
        else:
            console.print("[yellow]could not ask for its subscriptions now: the next renew tick creates them[/]")
        return
    console.print(f"tenant {existing.tenant_id}{_named(existing)} is registered already ({existing.status}): unchanged")
    if existing.status == SUSPENDED:
        console.print(f"[yellow]it is suspended ({escape(existing.reason or 'no reason recorded')}): {RESUME}[/]")
    elif existing.status == REMOVING:
        console.print("[yellow]its removal is under way: add it again once `tenants list` no longer shows it[/]")


async def _add(current: Session, tenant: Tenant) -> tuple[Tenant | None, bool]:
    async with current.storage() as storage:
        store = TenantStore(storage.table(TENANTS_TABLE))
        await store.setup()
        if not await store.add(tenant):
            found = await store.get(tenant.tenant_id)
            if found is not None:
                return found.tenant, False
            raise TenantConflictError(f"tenant {tenant.tenant_id} was removed while it was added: add it again")
        try:
            await schedule(MessageQueue(storage.queue(NOTIFICATIONS_QUEUE)), tenant.tenant_id, utcnow())
        except StorageUnavailableError:
            return None, False  # registered and active: the renew tick reconciles it
    return None, True


@dataclass(frozen=True)
class Row:
    """One line of ``tenants list``."""

    tenant: Tenant
    subscriptions: int
    last_pass: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The stable fields ``--json`` prints."""
        return {
            "tenantId": self.tenant.tenant_id,
            "name": self.tenant.name,
            "status": self.tenant.status,
            "subscriptions": self.subscriptions,
            "reason": self.tenant.reason,
            "lastPass": format_time(self.last_pass) if self.last_pass is not None else None,
            "addedAt": format_time(self.tenant.added_at),
        }


@app.command("list")
def list_tenants(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list for scripts.")] = False,
) -> None:
    """One line per tenant: id, name, status, subscription count, last error, last successful pass."""
    rows = run(_rows(multi_tenant(session(ctx))), "reading tenants")
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows], indent=2, ensure_ascii=False))
        return
    table = Table("tenant", "name", "status", "subscriptions", "last error", "last pass", "added", title="tenants")
    for row in rows:
        tenant = row.tenant
        table.add_row(
            tenant.tenant_id,
            escape(tenant.name),
            tenant.status,
            str(row.subscriptions),
            escape(tenant.reason),
            when(row.last_pass),
            when(tenant.added_at),
        )
    console.print(table)
    console.print(f"{len(rows)} tenant(s)")


async def _rows(current: Session) -> list[Row]:
    from azure.core.exceptions import ResourceNotFoundError

    async with current.storage() as storage:
        store = TenantStore(storage.table(TENANTS_TABLE))
        try:
            tenants = sorted(await store.list(), key=lambda t: (t.name.lower(), t.tenant_id))
            passes = await store.last_passes()
        except ResourceNotFoundError:
            return []  # no tenant was ever registered
        counts: dict[str, int] = {}
        try:
            for record in await SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE)).list():
                scope = scope_of(record.key)
                counts[scope] = counts.get(scope, 0) + 1
        except ResourceNotFoundError:
            pass  # the renew timer never ran
    return [Row(t, counts.get(t.tenant_id, 0), passes.get(t.tenant_id)) for t in tenants]


@app.command("remove")
def remove(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id (see `graphhooks tenants list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Mark a tenant for removal: the next renew tick deletes its subscriptions and everything kept for it."""
    current = multi_tenant(session(ctx))
    with failures():
        canonical = canonical_tenant_id(tenant_id)
    if not yes:
        typer.confirm(
            f"Remove tenant {canonical}? Its subscriptions and everything kept for it are deleted.", abort=True
        )
    tenant, already = run(_remove(current, canonical), "marking the tenant for removal")
    if already:
        console.print(f"tenant {tenant.tenant_id}{_named(tenant)} is being removed already")
    else:
        console.print(f"tenant {tenant.tenant_id}{_named(tenant)} is marked for removal")
    console.print(
        "the next renew tick deletes its subscriptions at Graph, then its records, cursors, index rows, secrets"
        " and desired entries, and emits one tenant.removed event on graph-changes"
    )


async def _remove(current: Session, tenant_id: str) -> tuple[Tenant, bool]:
    from azure.core.exceptions import ResourceNotFoundError

    async with current.storage() as storage:
        store = TenantStore(storage.table(TENANTS_TABLE))
        try:
            found = await store.get(tenant_id)
        except ResourceNotFoundError:
            found = None
        if found is None:
            raise OperatorRequestError(f"no tenant {tenant_id} is registered (see `graphhooks tenants list`)")
        if found.tenant.status == REMOVING:
            return found.tenant, True
        tenant = found.tenant.removing(utcnow())
        await store.save(tenant, found.etag)  # TenantConflictError if it changed meanwhile: run it again
    return tenant, False


def _named(tenant: Tenant) -> str:
    return f" ({escape(tenant.name)})" if tenant.name else ""
