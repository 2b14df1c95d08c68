"""`graphhooks desired add --tenant`: one tenant's own entries, against Azurite and the simulator's tenants.

A drive that only tenant B has is added for B alone: the renew tick subscribes to it in B
and nowhere else, while the template (GRAPH_SUBSCRIPTIONS) still applies to every tenant;
removing B's entry deletes B's subscription at the next tick. The refusals (single mode,
an unknown tenant, a malformed id) write nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from devtools.simctl import TenantControl
from graphhooks.cli import app
from shared.clock import utcnow
from shared.model.names import DESIRED_TABLE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE
from shared.model.tenant import scope_of
from shared.stores.clients import table_client
from shared.stores.desired import DesiredStore
from shared.stores.subscriptions import SubscriptionStore
from shared.stores.tenants import TenantStore
from tests.functional.stacks import RESOURCE, Stack
from tests.functional.tenant_stacks import B, C, close_controls, three_tenants

UNKNOWN = str(uuid.UUID(int=0xDEAD))
B_DRIVE = "b!only-in-b"
B_RESOURCE = f"drives/{B_DRIVE}/root"


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


async def cli(settings: Path, *args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, ["--settings", str(settings), *args])


async def _three_tenants(stack_factory: Any) -> tuple[Stack, list[str], dict[str, TenantControl]]:
    """The three tenants, not yet subscribed; B also has B_DRIVE."""
    stack, tenants, controls = await three_tenants(stack_factory, subscribe=False)
    await controls[B].create_drive(B_DRIVE)
    return stack, tenants, controls


async def _graph_resources(controls: dict[str, TenantControl]) -> dict[str, list[str]]:
    """Each tenant's subscriptions at Graph (the simulator), by resource."""
    return {t: sorted(s["resource"].strip("/") for s in await c.subscriptions()) for t, c in controls.items()}


async def _stored_entries(stack: Stack) -> list[Any]:
    async with table_client(stack.connection, DESIRED_TABLE) as client:
        return list(await DesiredStore(client).list())


async def test_a_tenants_own_entry_is_subscribed_only_in_that_tenant_and_removed_with_its_entry(
    stack_factory: Any, tmp_path: Path
) -> None:
    stack, tenants, controls = await _three_tenants(stack_factory)
    settings = write_settings(tmp_path / "multi.json", stack.env)
    try:
        added = await cli(settings, "desired", "add", B_RESOURCE, "--tenant", B.upper())
        assert added.exit_code == 0, added.output
        assert f"for tenant {B}" in added.stdout
        [entry] = await _stored_entries(stack)
        assert (entry.tenant, entry.resource, scope_of(entry.key)) == (B, B_RESOURCE, B)

        listed = await cli(settings, "desired", "list", "--tenant", B)
        assert listed.exit_code == 0, listed.output
        assert B_RESOURCE in listed.stdout and RESOURCE in listed.stdout and B in listed.stdout
        assert "every tenant" in listed.stdout  # the template's row
        of_c = await cli(settings, "desired", "list", "--tenant", C)
        assert RESOURCE in of_c.stdout and B_RESOURCE not in of_c.stdout

        await stack.worker.renew(utcnow())
        at_graph = await _graph_resources(controls)
        assert at_graph == {tenants[0]: [RESOURCE], B: sorted([B_RESOURCE, RESOURCE]), C: [RESOURCE]}
        async with table_client(stack.connection, SUBSCRIPTIONS_TABLE) as client:
            records = await SubscriptionStore(client).list()
        assert sorted((r.tenant, r.resource) for r in records if r.resource == B_RESOURCE) == [(B, B_RESOURCE)]

        # Without --tenant the template is meant, and there is no such template in the table.
        wrong = await cli(settings, "desired", "remove", B_RESOURCE)
        assert wrong.exit_code == 1 and "not a desired subscription" in wrong.stderr
        removed = await cli(settings, "desired", "remove", B_RESOURCE, "--tenant", B)
        assert removed.exit_code == 0, removed.output
        assert await _stored_entries(stack) == []
        await stack.worker.renew(utcnow())
        assert await _graph_resources(controls) == {t: [RESOURCE] for t in tenants}
    finally:
        await close_controls(controls)


async def test_an_entry_added_without_a_tenant_is_a_template_every_tenant_gets(
    stack_factory: Any, tmp_path: Path
) -> None:
    stack, tenants, controls = await _three_tenants(stack_factory)
    settings = write_settings(tmp_path / "multi.json", stack.env)
    try:
        for tenant in tenants:
            await controls[tenant].create_drive("b!everywhere")
        added = await cli(settings, "desired", "add", "drives/b!everywhere/root")
        assert added.exit_code == 0, added.output
        assert "every tenant" in added.stdout
        await stack.worker.renew(utcnow())
        expected = sorted(["drives/b!everywhere/root", RESOURCE])
        assert await _graph_resources(controls) == {t: expected for t in tenants}
    finally:
        await close_controls(controls)


async def test_an_unknown_or_malformed_tenant_is_refused_and_nothing_is_written(
    stack_factory: Any, tmp_path: Path
) -> None:
    stack, _tenants, controls = await _three_tenants(stack_factory)
    settings = write_settings(tmp_path / "multi.json", stack.env)
    try:
        unknown = await cli(settings, "desired", "add", B_RESOURCE, "--tenant", UNKNOWN)
        assert unknown.exit_code == 1
        assert f"no tenant {UNKNOWN} is registered" in unknown.stderr
        for bad in ("contoso.onmicrosoft.com", "not-a-guid"):
            malformed = await cli(settings, "desired", "add", B_RESOURCE, "--tenant", bad)
            assert malformed.exit_code == 1
            assert "is not a tenant id" in malformed.stderr and "Traceback" not in malformed.output
        async with table_client(stack.connection, TENANTS_TABLE) as client:
            store = TenantStore(client)
            stored = await store.get(C)
            assert stored is not None
            await store.save(stored.tenant.removing(utcnow()), stored.etag)
        leaving = await cli(settings, "desired", "add", "drives/b!x/root", "--tenant", C)
        assert leaving.exit_code == 1 and f"tenant {C} is being removed" in leaving.stderr
        listed = await cli(settings, "desired", "list", "--tenant", "nope")
        assert listed.exit_code == 1 and "is not a tenant id" in listed.stderr
        assert await _stored_entries(stack) == []
    finally:
        await close_controls(controls)


async def test_a_tenant_is_refused_in_single_mode(azurite_factory: Any, tmp_path: Path) -> None:
    azurite = azurite_factory()  # its own: the desired table has the app's fixed name
    settings = write_settings(tmp_path / "single.json", {"AzureWebJobsStorage": azurite.connection_string})
    for command in (["add", B_RESOURCE], ["remove", B_RESOURCE], ["list"]):
        result = await cli(settings, "desired", *command, "--tenant", B)
        assert result.exit_code == 1, (command, result.output)
        assert "--tenant applies only with TENANT_MODE=multi" in result.stderr
    listed = await cli(settings, "desired", "list")
    assert listed.exit_code == 0 and "tenant" not in listed.stdout  # single mode's table is as before
    async with table_client(azurite.connection_string, DESIRED_TABLE) as client:
        assert await DesiredStore(client).list() == ()
