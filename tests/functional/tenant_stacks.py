"""A multi-tenant stack for functional tests: the simulator's home tenant, B and C, each with DRIVE."""

from __future__ import annotations

import json
import uuid
from typing import Any

from devtools.simctl import TenantControl
from shared.clock import utcnow
from shared.model.names import TENANTS_TABLE
from shared.model.tenant import ACTIVE, new_tenant
from shared.stores.clients import table_client
from shared.stores.tenants import TenantStore
from tests.functional.stacks import DRIVE, RESOURCE, Stack

B = str(uuid.UUID(int=0xB0B))
C = str(uuid.UUID(int=0xC0C))


async def three_tenants(
    stack_factory: Any, subscribe: bool = True, **settings: str
) -> tuple[Stack, list[str], dict[str, TenantControl]]:
    """A TENANT_MODE=multi stack with three active tenants watching a drive of the same id.

    With ``subscribe`` the renew tick creates their subscriptions and their first syncs run.
    """
    env = {"TENANT_MODE": "multi", "GRAPH_SUBSCRIPTIONS": json.dumps([{"resource": RESOURCE}]), **settings}
    stack = await stack_factory(env=env)
    home = stack.env["GRAPH_TENANT_ID"].lower()
    tenants = [home, B, C]
    controls: dict[str, TenantControl] = {}
    for tenant in tenants:
        controls[tenant] = await TenantControl(stack.sim.control_url, None if tenant == home else tenant).__aenter__()
        if tenant != home:
            await controls[home].call("POST", "/tenants", {"tenant": tenant, "consented": True})
            await controls[tenant].create_drive(DRIVE)  # the same drive id in every tenant
    async with table_client(stack.connection, TENANTS_TABLE) as client:
        store = TenantStore(client)
        await store.setup()
        for tenant in tenants:
            assert await store.add(new_tenant(tenant, f"tenant {tenant[:4]}", utcnow(), status=ACTIVE))
    if subscribe:
        await stack.worker.renew(utcnow())
        await stack.pump(lambda: True)  # the syncs asked for at creation: nothing changed yet
    return stack, tenants, controls


async def close_controls(controls: dict[str, TenantControl]) -> None:
    """Close every tenant's simulator control client."""
    for control in controls.values():
        await control.__aexit__(None, None, None)


async def rows_of(stack: Stack, tenant: str) -> list[tuple[str, str, str]]:
    """Every row of every table whose keys name ``tenant``."""
    from azure.data.tables.aio import TableServiceClient

    found: list[tuple[str, str, str]] = []
    async with TableServiceClient.from_connection_string(stack.connection) as service:
        async for table in service.list_tables():
            client = service.get_table_client(table.name)
            async for row in client.list_entities(select=["PartitionKey", "RowKey"]):
                if tenant in row["PartitionKey"] or tenant in row["RowKey"]:
                    found.append((table.name, row["PartitionKey"], row["RowKey"]))
    return found
