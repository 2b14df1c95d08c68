"""A sink's per-item order rows with TENANT_MODE=multi: kept by tenant, and a removed tenant's forgotten."""

from __future__ import annotations

from typing import Any

from azure.data.tables.aio import TableClient

from shared.sinks.ordering import ORDER_TABLE, OrderBook
from shared.stores.clients import table_client

A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"


def event(tenant: str, item: str, at: str) -> dict[str, Any]:
    return {"id": f"{tenant}-{item}-{at}", "itemId": item, "containerId": "b!same-drive", "observedAt": at,
            "tenantId": tenant}  # fmt: skip


async def _keys(client: TableClient) -> list[str]:
    return sorted([row["RowKey"] async for row in client.list_entities(select=["RowKey"])])


async def test_two_tenants_items_of_equal_ids_are_ordered_apart_and_one_is_forgotten(azurite_factory: Any) -> None:
    connection = azurite_factory().connection_string
    async with table_client(connection, ORDER_TABLE) as client:
        book = OrderBook(client, "sink-q", wait=0.1, by_tenant=True)
        await book.setup()
        # A's event of item 1 is in flight; B's item of the same drive and id is not held behind it.
        await book.claim(event(A, "1", "2026-12-08T10:00:00.000000Z"))
        assert await book.claim(event(B, "1", "2026-12-08T10:00:01.000000Z"))
        await book.claim(event(B, "2", "2026-12-08T10:00:02.000000Z"))
        assert await _keys(client) == [f"{A}~b!same-drive|1", f"{B}~b!same-drive|1", f"{B}~b!same-drive|2"]

        await book.forget(B)
        await book.forget(B)  # again, as after a crash: nothing left to delete, no error
        assert await _keys(client) == [f"{A}~b!same-drive|1"]


async def test_a_single_tenant_deployment_keeps_its_keys(azurite_factory: Any) -> None:
    connection = azurite_factory().connection_string
    async with table_client(connection, ORDER_TABLE) as client:
        book = OrderBook(client, "sink-q", wait=0.1)
        await book.setup()
        await book.claim(event(A, "1", "2026-12-08T10:00:00.000000Z"))
        await book.forget(A)  # no tenants to forget in single mode
        assert await _keys(client) == ["b!same-drive|1"]
