"""The blob mirror with TENANT_MODE=multi: each tenant's files under its own prefix, read with its own token;
a removed tenant's blobs and rows go, and a late retry of its events writes nothing back."""

from __future__ import annotations

import json
from typing import Any

from azure.data.tables.aio import TableClient

from shared.app.sinks import build_sinks
from shared.clock import utcnow
from shared.model.names import TENANTS_TABLE
from shared.sinks.mirror import MIRROR_TABLE
from shared.stores.clients import table_client
from shared.stores.tenants import TenantStore
from tests.functional.stacks import DRIVE
from tests.functional.tenant_stacks import B, close_controls, rows_of, three_tenants
from tests.functional.test_sinks_mirror import QUEUE, blobs, settle

SINKS = json.dumps([{"type": "blob", "container": "mirror", "name": QUEUE, "onDelete": "move"}])


async def _mirror_rows(connection: str) -> list[tuple[str, str]]:
    async with TableClient.from_connection_string(connection, MIRROR_TABLE) as client:
        return [(r["PartitionKey"], r["RowKey"]) async for r in client.list_entities(select=["PartitionKey", "RowKey"])]


async def test_each_tenant_is_mirrored_under_its_own_prefix_and_a_removed_one_is_deleted(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory, SINKS=SINKS)
    runtime = await build_sinks(stack.env)
    try:
        # The same drive id and the same path in every tenant, each with its own content.
        items = {t: await controls[t].create_item(DRIVE, "report.txt", f"from {t}") for t in tenants}
        gone = await controls[B].create_item(DRIVE, "old.txt", "to be deleted")
        await settle(stack, runtime, lambda: all(stack.for_item(i["id"]) for i in [*items.values(), gone]))
        await controls[B].delete_item(DRIVE, gone["id"])
        await settle(stack, runtime, lambda: any(e["changeType"] == "deleted" for e in stack.for_item(gone["id"])))
        mirrored = await blobs(stack)
        assert {name: mirrored[name] for name in mirrored if not name.startswith("deleted/")} == {
            f"{t}/{DRIVE}/report.txt": f"from {t}".encode() for t in tenants
        }
        assert mirrored[f"deleted/{B}/{DRIVE}/old.txt"] == b"to be deleted"
        assert any(pk.startswith(f"{B}~") for pk, _ in await _mirror_rows(stack.connection))

        async with table_client(stack.connection, TENANTS_TABLE) as client:
            store = TenantStore(client)
            stored = await store.get(B)
            assert stored is not None
            await store.save(stored.tenant.removing(utcnow()), stored.etag)
        assert stack.worker.tenants is not None
        assert (await stack.worker.tenants.tick(stack.worker.settings.subscriptions, utcnow())).removed == 1
        await settle(stack, runtime, lambda: any(e["kind"] == "tenant" for e in stack.events))

        # B's blobs, deleted copies included, and its rows are gone; the others' stay.
        assert sorted(await blobs(stack)) == sorted(f"{t}/{DRIVE}/report.txt" for t in tenants if t != B)
        assert not [pk for pk, _ in await _mirror_rows(stack.connection) if pk.startswith(f"{B}~")]
        # In every table, only the mirror's record of the removal names B (its id and when).
        assert await rows_of(stack, B) == [(MIRROR_TABLE, f"{QUEUE}|removed-tenants", B)]

        # An event of B observed before the removal, retried late (or replayed from poison), writes nothing back.
        [late] = stack.for_item(items[B]["id"])
        assert await runtime.runner(QUEUE).handle(json.dumps(late), 1) == "delivered"  # dropped, not poisoned
        assert f"{B}/{DRIVE}/report.txt" not in await blobs(stack)
    finally:
        await runtime.close()
        await close_controls(controls)
