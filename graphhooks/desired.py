"""``graphhooks desired``: the desired subscriptions kept in Table storage, beside the seed.

With TENANT_MODE=multi an entry is a template that every tenant gets, unless it is added
``--tenant <id>``: then it is that tenant's own (its group for ``forEachMemberOf``, its drive),
keyed within the tenant, and only that tenant subscribes to it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer
from rich.table import Table

from shared.config.security import resource_data_settings
from shared.config.subscriptions import parse_desired
from shared.config.tenants import tenant_mode
from shared.errors import InvalidSettingError, OperatorRequestError, SettingsError
from shared.model.catalog import split_resource
from shared.model.names import DESIRED_TABLE, TENANTS_TABLE
from shared.model.resources import DesiredSubscription
from shared.model.tenant import MULTI, REMOVING, canonical_tenant_id
from shared.stores.desired import DesiredStore
from shared.stores.tenants import TenantStore

from .runtime import Session, console, failures, run, session

app = typer.Typer(help="Desired subscriptions: GRAPH_SUBSCRIPTIONS (the seed) and the table the renew timer adds.")
SEED = "GRAPH_SUBSCRIPTIONS"
TENANT_HELP = (
    "TENANT_MODE=multi: the entry is this tenant's own (its group, its drive); without it, an entry is a"
    " template that every tenant gets."
)
EVERY_TENANT = "every tenant"


def tenant_scope(current: Session, tenant: str | None) -> str:
    """The canonical tenant id ``--tenant`` names ('' without it); refused in single mode or when malformed."""
    with failures():
        multi = tenant_mode(current.values) == MULTI
        if tenant is None:
            return ""
        if not multi:
            raise OperatorRequestError(
                "--tenant applies only with TENANT_MODE=multi: this deployment serves one tenant (GRAPH_TENANT_ID)"
            )
        return canonical_tenant_id(tenant)


def seed(values: dict[str, str]) -> tuple[DesiredSubscription, ...]:
    """The app setting's entries, validated as the app validates them (its tenant mode and partner topic too)."""
    return parse_desired(values.get(SEED, "").strip() or "[]", multi=tenant_mode(values) == MULTI, environ=values)


def validated(
    resource: str, change_type: str, include_resource_data: bool, group: str | None, values: dict[str, str]
) -> DesiredSubscription:
    """One entry checked by the same rules as GRAPH_SUBSCRIPTIONS (settings.parse_desired)."""
    entry: dict[str, object] = {"resource": resource, "changeType": change_type}
    if include_resource_data:
        entry["includeResourceData"] = True
    if group is not None:
        entry["forEachMemberOf"] = group
    try:
        [item] = parse_desired(json.dumps([entry]))
    except InvalidSettingError as exc:
        reason = str(exc).removeprefix(f"invalid setting {exc.key}: ").removeprefix("entry 0 ")
        raise OperatorRequestError(f"refused: {reason}") from exc
    if item.include_resource_data:
        # The app needs the certificate to subscribe with resource data: refuse the entry before it is stored.
        try:
            resource_data_settings(values, required=True)
        except SettingsError as exc:
            raise OperatorRequestError(f"refused: includeResourceData needs the certificate settings ({exc})") from exc
    return item


@app.command("add")
def add(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="A Graph resource, e.g. drives/{id}/root.")],
    change_type: Annotated[
        str, typer.Option("--change-type", "-c", metavar="TYPES", help="Comma-separated change types.")
    ] = "updated",
    include_resource_data: Annotated[
        bool, typer.Option("--include-resource-data", help="Ask Graph for rich notifications.")
    ] = False,
    for_each_member_of: Annotated[
        str | None,
        typer.Option(metavar="GROUP_ID", help="A group id: one subscription per member ({member} in the resource)."),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="TENANT_ID", help=TENANT_HELP)] = None,
) -> None:
    """Add (or replace) a desired subscription in the table; the next renew tick creates it.

    With TENANT_MODE=multi and no --tenant, the entry is a template: every tenant subscribes to it.
    """
    current = session(ctx)
    scope = tenant_scope(current, tenant)
    work = _add(current, resource, change_type, include_resource_data, for_each_member_of, scope)
    item = run(work, "adding the entry")
    whose = f" for tenant {item.tenant}" if item.tenant else ""
    if not item.tenant and tenant_mode(current.values) == MULTI:
        whose = f" for {EVERY_TENANT} (a template)"
    what = f"{item.graph_resource} ({item.change_type}){whose}"
    console.print(f"added {what}: the next renew tick creates its subscription")


async def _add(
    current: Session, resource: str, change_type: str, include_resource_data: bool, group: str | None, tenant: str
) -> DesiredSubscription:
    item = replace(validated(resource, change_type, include_resource_data, group, current.values), tenant=tenant)
    async with current.storage() as storage:
        if tenant:
            await _check_registered(TenantStore(storage.table(TENANTS_TABLE)), tenant)
        await DesiredStore(storage.table(DESIRED_TABLE)).add(item)
    return item


async def _check_registered(store: TenantStore, tenant: str) -> None:
    """Refuse a tenant that is not in table ``tenants``, or whose removal is under way (nothing is written)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        found = await store.get(tenant)
    except ResourceNotFoundError:
        found = None  # no tenant was ever registered
    if found is None:
        raise OperatorRequestError(
            f"no tenant {tenant} is registered: add it first (`graphhooks tenants add`, or its admin's consent)"
        )
    if found.tenant.status == REMOVING:
        raise OperatorRequestError(f"tenant {tenant} is being removed: its entries would be deleted with it")


@app.command("remove")
def remove(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="The resource of the entry to remove.")],
    change_type: Annotated[
        str | None,
        typer.Option("--change-type", "-c", metavar="TYPES", help="Needed when the resource has several entries."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="TENANT_ID", help="The tenant whose own entry to remove (not a template)."),
    ] = None,
) -> None:
    """Remove a desired subscription from the table; the next renew tick deletes its subscription."""
    current = session(ctx)
    scope = tenant_scope(current, tenant)
    removed, still_seeded = run(_remove(current, resource.strip().strip("/"), change_type, scope), "removing the entry")
    whose = f" of tenant {removed.tenant}" if removed.tenant else ""
    console.print(f"removed {removed.resource} ({removed.change_type}){whose} from the table")
    if still_seeded:
        console.print(f"[yellow]{SEED} still lists it: its subscription stays[/]")
    else:
        console.print("the next renew tick deletes its subscription")


async def _remove(
    current: Session, resource: str, change_type: str | None, tenant: str
) -> tuple[DesiredSubscription, bool]:
    seeded = seed(current.values)
    async with current.storage() as storage:
        store = DesiredStore(storage.table(DESIRED_TABLE))
        # A template and a tenant's own entry may share a resource: --tenant says which one.
        matches = [d for d in await store.list() if d.tenant == tenant and _matches(d, resource, change_type)]
        if not matches:
            if tenant:
                raise OperatorRequestError(
                    f"{resource} is not an entry of tenant {tenant} (see `graphhooks desired list --tenant {tenant}`)"
                )
            if any(_matches(d, resource, change_type) for d in seeded):
                raise OperatorRequestError(
                    f"{resource} comes from the {SEED} app setting (the seed), not the table:"
                    " remove it from the setting instead"
                )
            raise OperatorRequestError(f"{resource} is not a desired subscription (see `graphhooks desired list`)")
        if len(matches) > 1:
            kinds = ", ".join(sorted(d.change_type for d in matches))
            raise OperatorRequestError(f"{resource} has several entries ({kinds}): name one with --change-type")
        [item] = matches
        await store.remove(item.key)
    return item, any(d.key == item.key for d in seeded)


def _matches(item: DesiredSubscription, resource: str, change_type: str | None) -> bool:
    if item.resource != split_resource(resource)[0]:
        return False
    return change_type is None or item.change_type == change_type.replace(" ", "")


@app.command("list")
def list_desired(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", metavar="TENANT_ID", help="Only what this tenant gets: the templates and its own entries."
        ),
    ] = None,
) -> None:
    """Every desired subscription: the seed's and the table's (the table wins on the same resource and type).

    With TENANT_MODE=multi a column says whose each entry is: one tenant's, or every tenant's (a template).
    """
    current = session(ctx)
    scope = tenant_scope(current, tenant)
    multi = tenant_mode(current.values) == MULTI
    seeded, stored = run(_list(current), "reading the desired table")
    columns = ("source", "resource", "changeType", "resource data", "for each member of")
    table = Table(*columns, *(("tenant",) if multi else ()), title="desired")
    stored_keys = {d.key for d in stored}
    seeded_keys = {d.key for d in seeded}
    rows = [("seed", item) for item in seeded if item.key not in stored_keys]
    rows += [("table (overrides seed)" if item.key in seeded_keys else "table", item) for item in stored]
    for origin, item in rows:
        if scope and not _applies(item, scope):
            continue
        table.add_row(origin, *_cells(item), *((_whose(item),) if multi else ()))
    console.print(table)


def _applies(item: DesiredSubscription, tenant: str) -> bool:
    """Whether ``tenant`` gets the entry: its own, or a template that does not leave it out."""
    if item.tenant:
        return item.tenant == tenant
    return not item.tenants or tenant in item.tenants


def _whose(item: DesiredSubscription) -> str:
    if item.tenant:
        return item.tenant
    return ", ".join(sorted(item.tenants)) if item.tenants else EVERY_TENANT


async def _list(current: Session) -> tuple[tuple[DesiredSubscription, ...], tuple[DesiredSubscription, ...]]:
    seeded = seed(current.values)
    async with current.storage() as storage:
        return seeded, await DesiredStore(storage.table(DESIRED_TABLE)).list()


def _cells(item: DesiredSubscription) -> tuple[str, str, str, str]:
    resource_data = "yes" if item.include_resource_data else ""
    return item.graph_resource, item.change_type, resource_data, item.for_each_member_of or ""
