"""A mirror's tenant removal against Azurite, cut short at each step and finished by the retry."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from shared.sinks.ordering import ORDER_TABLE, OrderBook
from shared.sinks.removals import RemovedTenants, tenant_rows
from shared.stores.clients import table_client

SINK = "mirror-q"
GONE = "aaaaaaaa-0000-0000-0000-00000000000a"
STAYS = "bbbbbbbb-0000-0000-0000-00000000000b"
REMOVED_AT = "2026-12-08T10:00:00.000000Z"


class Crash(Exception):
    """The instance died here."""


class CrashOnce:
    """A real client whose method ``name`` dies on its first call, then works."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner, self._name, self.crashed = inner, name, False

    def __getattr__(self, attribute: str) -> Any:
        if attribute == self._name and not self.crashed:
            self.crashed = True
            raise Crash(attribute)
        return getattr(self._inner, attribute)


async def _seed(container: ContainerClient, index: Any, order: OrderBook) -> None:
    for name in (f"{GONE}/d/a.txt", f"deleted/{GONE}/d/b.txt", f"{STAYS}/d/a.txt"):
        await container.upload_blob(name, b"x")
    for tenant in (GONE, STAYS):
        await index.upsert_entity({"PartitionKey": tenant_rows(SINK, tenant) + "d", "RowKey": "item", "blob": "n"})
        event = {
            "id": f"e-{tenant}",
            "itemId": "item",
            "containerId": "d",
            "observedAt": REMOVED_AT,
            "tenantId": tenant,
        }
        await order.claim(event)


async def _left(container: ContainerClient, index: Any, order_table: Any) -> tuple[list[str], list[str], list[str]]:
    blobs = sorted([b.name async for b in container.list_blobs()])
    rows = sorted([r["PartitionKey"] async for r in index.list_entities() if r["PartitionKey"].startswith(GONE)])
    orders = sorted([r["RowKey"] async for r in order_table.list_entities() if r["RowKey"].startswith(GONE)])
    return blobs, rows, orders


@pytest.mark.parametrize(
    ("client", "method"), [("container", "get_blob_client"), ("index", "delete_entity"), ("order", "delete_entity")]
)
async def test_a_removal_cut_short_at_each_step_is_finished_by_the_retry(
    azurite_factory: Any, client: str, method: str
) -> None:
    connection = azurite_factory().connection_string
    async with (
        ContainerClient.from_connection_string(connection, "mirror") as container,
        table_client(connection, "sinkmirror") as index,
        table_client(connection, ORDER_TABLE) as order_table,
    ):
        await container.create_container()
        await index.create_table()
        order = OrderBook(order_table, SINK, wait=0.1, by_tenant=True)
        await order.setup()
        await _seed(container, index, order)
        crashing = {"container": container, "index": index, "order": order_table}
        crashing[client] = CrashOnce(crashing[client], method)
        first = RemovedTenants(SINK, crashing["index"], crashing["container"],
                               OrderBook(crashing["order"], SINK, wait=0.1, by_tenant=True))  # fmt: skip
        with pytest.raises(Crash):
            await first.forget(GONE, REMOVED_AT)
        # Recorded before anything went: a late event of the tenant is already dropped.
        assert await first.removed_after(GONE, "2026-12-08T09:59:59.000000Z")

        await RemovedTenants(SINK, index, container, order).forget(GONE, REMOVED_AT)  # the event's retry
        blobs, rows, orders = await _left(container, index, order_table)
        assert (blobs, rows, orders) == ([f"{STAYS}/d/a.txt"], [], [])
        assert await RemovedTenants(SINK, index, container, order).removed_after(GONE, "2026-12-08T09:00:00Z")
        assert not await RemovedTenants(SINK, index, container, order).removed_after(STAYS, "2026-12-08T09:00:00Z")
