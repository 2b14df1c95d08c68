"""``graphhooks desired``: the desired subscriptions kept in Table storage, beside the seed."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from shared.config.security import resource_data_settings
from shared.config.subscriptions import parse_desired
from shared.errors import InvalidSettingError, OperatorRequestError, SettingsError
from shared.model.catalog import split_resource
from shared.model.names import DESIRED_TABLE
from shared.model.resources import DesiredSubscription
from shared.stores.desired import DesiredStore

from .runtime import Session, console, run, session

app = typer.Typer(help="Desired subscriptions: GRAPH_SUBSCRIPTIONS (the seed) and the table the renew timer adds.")
SEED = "GRAPH_SUBSCRIPTIONS"


def seed(values: dict[str, str]) -> tuple[DesiredSubscription, ...]:
    """The app setting's entries, validated as the app validates them."""
    return parse_desired(values.get(SEED, "").strip() or "[]")


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
) -> None:
    """Add (or replace) a desired subscription in the table; the next renew tick creates it."""
    current = session(ctx)
    item = run(_add(current, resource, change_type, include_resource_data, for_each_member_of), "adding the entry")
    console.print(f"added {item.graph_resource} ({item.change_type}): the next renew tick creates its subscription")


async def _add(
    current: Session, resource: str, change_type: str, include_resource_data: bool, group: str | None
) -> DesiredSubscription:
    item = validated(resource, change_type, include_resource_data, group, current.values)
    async with current.storage() as storage:
        await DesiredStore(storage.table(DESIRED_TABLE)).add(item)
    return item


@app.command("remove")
def remove(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="The resource of the entry to remove.")],
    change_type: Annotated[
        str | None,
        typer.Option("--change-type", "-c", metavar="TYPES", help="Needed when the resource has several entries."),
    ] = None,
) -> None:
    """Remove a desired subscription from the table; the next renew tick deletes its subscription."""
    current = session(ctx)
    removed, still_seeded = run(_remove(current, resource.strip().strip("/"), change_type), "removing the entry")
    console.print(f"removed {removed.resource} ({removed.change_type}) from the table")
    if still_seeded:
        console.print(f"[yellow]{SEED} still lists it: its subscription stays[/]")
    else:
        console.print("the next renew tick deletes its subscription")


async def _remove(current: Session, resource: str, change_type: str | None) -> tuple[DesiredSubscription, bool]:
    seeded = seed(current.values)
    async with current.storage() as storage:
        store = DesiredStore(storage.table(DESIRED_TABLE))
        matches = [d for d in await store.list() if _matches(d, resource, change_type)]
        if not matches:
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
def list_desired(ctx: typer.Context) -> None:
    """Every desired subscription: the seed's and the table's (the table wins on the same resource and type)."""
    current = session(ctx)
    seeded, stored = run(_list(current), "reading the desired table")
    table = Table("source", "resource", "changeType", "resource data", "for each member of", title="desired")
    stored_keys = {d.key for d in stored}
    for item in seeded:
        if item.key not in stored_keys:
            table.add_row("seed", *_cells(item))
    for item in stored:
        origin = "table (overrides seed)" if item.key in {d.key for d in seeded} else "table"
        table.add_row(origin, *_cells(item))
    console.print(table)


async def _list(current: Session) -> tuple[tuple[DesiredSubscription, ...], tuple[DesiredSubscription, ...]]:
    seeded = seed(current.values)
    async with current.storage() as storage:
        return seeded, await DesiredStore(storage.table(DESIRED_TABLE)).list()


def _cells(item: DesiredSubscription) -> tuple[str, str, str, str]:
    resource_data = "yes" if item.include_resource_data else ""
    return item.graph_resource, item.change_type, resource_data, item.for_each_member_of or ""
