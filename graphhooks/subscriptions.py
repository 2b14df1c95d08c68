"""``graphhooks subscriptions``: the subscriptions the app holds, and one-off reconciler actions.

``create``, ``renew`` and ``delete`` run the app's own Reconciler (built from the same
settings, as the renew timer builds it) on one entry, so they behave exactly like a tick.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shared.clock import utcnow
from shared.errors import OperatorRequestError
from shared.model.catalog import split_resource
from shared.model.cursor import CursorState
from shared.model.resources import DesiredSubscription, resource_key
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.stores.cursors import CursorStore
from shared.stores.desired import desired_subscriptions
from shared.stores.subscriptions import SubscriptionStore

from .runtime import Session, console, run, session

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.app.worker import Worker
    from shared.reconcile.reconciler import Reconciler

app = typer.Typer(help="The subscriptions the app holds at Graph.")
SUBSCRIPTIONS_TABLE = "subscriptions"
CURSORS_TABLE = "deltacursors"
READS_AT_ONCE = 32


@dataclass(frozen=True)
class Row:
    """One line of ``subscriptions list``."""

    record: SubscriptionRecord
    cursor: CursorState
    notified: datetime | None = None


def when(moment: datetime | None) -> str:
    """A time as the table shows it (UTC, to the second), or a dash."""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


@app.command("list")
def list_subscriptions(ctx: typer.Context) -> None:
    """A table of resource, id, status, expiry, last notification, last sync and certificate (never a clientState)."""
    rows = run(_rows(session(ctx)), "reading subscriptions")
    columns = ("resource", "id", "status", "expires", "last notification", "last completed sync", "pass", "certificate")
    table = Table(*columns, title="subscriptions")
    for row in rows:
        record = row.record
        table.add_row(
            record.graph_resource,
            record.subscription_id or "-",
            record.status,
            when(record.expires_at),
            when(row.notified),
            when(row.cursor.synced_from),
            row.cursor.mode.value if row.cursor.mode else "",
            record.certificate_id,  # rich subscriptions: the certificate Graph encrypts for
        )
    console.print(table)
    console.print(f"{len(rows)} subscription(s)")


async def _rows(current: Session) -> list[Row]:
    from azure.core.exceptions import ResourceNotFoundError

    async with current.storage() as storage:
        store = SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE))
        cursors = CursorStore(storage.table(CURSORS_TABLE))
        try:
            records = sorted(await store.list(), key=lambda r: (r.resource, r.change_type))
        except ResourceNotFoundError:
            return []  # the renew timer never ran
        gate = asyncio.Semaphore(READS_AT_ONCE)

        async def cursor(record: SubscriptionRecord) -> CursorState:
            async with gate:
                return (await cursors.load(resource_key(record.resource))).state

        states = await asyncio.gather(*(cursor(r) for r in records))
        notified = await store.last_notified()
    return [Row(r, s, notified.get(r.key)) for r, s in zip(records, states, strict=True)]


@app.command("create")
def create(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="A desired entry's resource (see `graphhooks desired list`).")],
    change_type: Annotated[
        str | None,
        typer.Option(
            "--change-type",
            "-c",
            metavar="TYPES",
            help="The entry's changeType, e.g. created,updated: needed when the resource has several entries.",
        ),
    ] = None,
) -> None:
    """Create the subscription of one desired entry now, instead of waiting for the renew tick."""
    record = run(_create(session(ctx), resource.strip().strip("/"), change_type), "creating the subscription")
    console.print(f"created {record.subscription_id} for {record.resource}, expires {when(record.expires_at)}")


async def _create(current: Session, resource: str, change_type: str | None) -> SubscriptionRecord:
    async with current.worker() as worker, current.storage() as storage:
        want = await _desired_entry(worker, resource, change_type)
        store = SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE))
        existing = next((r for r in await store.list() if r.key == want.key), None)
        if existing is not None and existing.status == ACTIVE:
            raise OperatorRequestError(
                f"{resource} already has subscription {existing.subscription_id}:"
                f" `graphhooks subscriptions renew {existing.subscription_id}` extends it"
            )
        if existing is not None and existing.subscription_id:
            return await _reconciler(worker).recreate(existing, utcnow())
        return await _reconciler(worker).create(want, utcnow())


def _reconciler(worker: Worker) -> Reconciler:
    """Graph's reconciler; with TENANT_MODE=multi each tenant has its own, and the timer drives them."""
    if worker.reconciler is None:
        raise OperatorRequestError(
            "with TENANT_MODE=multi the renew timer creates, renews and deletes each tenant's subscriptions"
        )
    return worker.reconciler


async def _desired_entry(worker: Worker, resource: str, change_type: str | None) -> DesiredSubscription:
    desired = await desired_subscriptions(worker.settings.subscriptions, worker.desired)
    path = split_resource(resource)[0]
    found = [d for d in desired if d.resource == path and (change_type is None or d.change_type == change_type)]
    if not found:
        raise OperatorRequestError(f"{resource} is not desired: add it first with `graphhooks desired add {resource}`")
    if len(found) > 1:
        raise OperatorRequestError(f"{resource} has several desired entries: name one with --change-type")
    [want] = found
    if want.for_each_member_of is not None:
        raise OperatorRequestError(f"{resource} is a subscription set: the renew timer expands it over the group")
    return want


@app.command("renew")
def renew(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Graph's subscription id (see `subscriptions list`).")],
) -> None:
    """Extend one subscription to its resource's maximum lifetime now (re-created if Graph lost it)."""
    record = run(_renew(session(ctx), subscription_id), "renewing the subscription")
    console.print(f"renewed {record.subscription_id}: expires {when(record.expires_at)}")


async def _renew(current: Session, subscription_id: str) -> SubscriptionRecord:
    async with current.worker() as worker, current.storage() as storage:
        record = await _stored(storage.table(SUBSCRIPTIONS_TABLE), subscription_id)
        return await _reconciler(worker).renew(record, utcnow())


@app.command("delete")
def delete(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Graph's subscription id (see `subscriptions list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one subscription at Graph and its record (its cursor too, unless it is still desired)."""
    current = session(ctx)
    if not yes:
        typer.confirm(f"Delete subscription {subscription_id}?", abort=True)
    resource, still_desired = run(_delete(current, subscription_id), "deleting the subscription")
    console.print(f"deleted {subscription_id} ({resource})")
    if still_desired:
        console.print(
            "[yellow]it is still desired: the next renew tick creates it again"
            " (remove it with `graphhooks desired remove` to stop that)[/]"
        )


async def _delete(current: Session, subscription_id: str) -> tuple[str, bool]:
    async with current.worker() as worker, current.storage() as storage:
        record = await _stored(storage.table(SUBSCRIPTIONS_TABLE), subscription_id)
        desired = await desired_subscriptions(worker.settings.subscriptions, worker.desired)
        kept = {resource_key(d.resource) for d in desired}
        await _reconciler(worker).remove(record, kept)
        return record.resource, any(d.key == record.key for d in desired)


async def _stored(table: TableClient, subscription_id: str) -> SubscriptionRecord:
    record = await SubscriptionStore(table).find(subscription_id)
    if record is None:
        raise OperatorRequestError(f"no stored subscription has id {subscription_id!r} (see `subscriptions list`)")
    return record
