"""`graphhooks tenants` against a real Azurite: add, list (--json), remove, and the refusal in single mode.

The module has an Azurite of its own, since the commands use the app's fixed names (table
``tenants``, queue ``graph-notifications``); tests keep apart by their tenant ids.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devtools.azurite import Azurite, start_azurite
from graphhooks.cli import app
from shared.clock import format_time, utcnow
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE
from shared.model.notifications import Envelope
from shared.model.subscription import ACTIVE as SUBSCRIBED
from shared.model.subscription import SubscriptionRecord
from shared.model.tenant import ACTIVE, REMOVING, SUSPENDED, Tenant, new_tenant, scoped_key
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore
from shared.stores.tenants import TenantStore

JSON_FIELDS = ["tenantId", "name", "status", "subscriptions", "reason", "lastPass", "addedAt"]


@pytest.fixture(scope="module")
def storage() -> Iterator[Azurite]:
    emulator = start_azurite()
    try:
        yield emulator
    finally:
        emulator.stop()


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


@pytest.fixture
def multi(storage, tmp_path) -> Path:
    return write_settings(
        tmp_path / "multi.json", {"AzureWebJobsStorage": storage.connection_string, "TENANT_MODE": "multi"}
    )


@pytest.fixture
def single(storage, tmp_path) -> Path:
    return write_settings(tmp_path / "single.json", {"AzureWebJobsStorage": storage.connection_string})


async def cli(settings: Path, *args: str, input: str | None = None) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, ["--settings", str(settings), *args], input=input)


async def tenant(storage: Azurite, tenant_id: str) -> Tenant | None:
    async with table_client(storage.connection_string, TENANTS_TABLE) as client:
        found = await TenantStore(client).get(tenant_id)
    return found.tenant if found is not None else None


async def envelopes_for(storage: Azurite, tenant_id: str) -> list[Envelope]:
    """The tenant envelopes naming ``tenant_id`` on graph-notifications (left in place)."""
    async with queue_client(storage.connection_string, NOTIFICATIONS_QUEUE) as client:
        try:
            peeked = await client.peek_messages(max_messages=32)
        except Exception:  # noqa: BLE001 - no queue yet
            return []
    found = [Envelope.from_json(message.content) for message in peeked]
    return [e for e in found if e.source == "tenant" and e.items == [{"tenantId": tenant_id}]]


async def seed(storage: Azurite, *tenants: Tenant) -> None:
    async with table_client(storage.connection_string, TENANTS_TABLE) as client:
        store = TenantStore(client)
        await store.setup()
        for one in tenants:
            assert await store.add(one)


def new_id() -> str:
    return str(uuid.uuid4())


async def test_add_registers_the_tenant_active_and_asks_for_its_subscriptions_once(multi, storage):
    tenant_id = new_id()

    result = await cli(multi, "tenants", "add", tenant_id.upper(), "--name", "Contoso")

    assert result.exit_code == 0, result.output
    assert f"added tenant {tenant_id} (Contoso) as active" in result.output
    found = await tenant(storage, tenant_id)
    assert found is not None and (found.status, found.name) == (ACTIVE, "Contoso")
    assert len(await envelopes_for(storage, tenant_id)) == 1


@pytest.mark.parametrize("bad", ["contoso.onmicrosoft.com", "not-a-guid", "{" + str(uuid.UUID(int=7)) + "}"])
async def test_add_refuses_what_is_not_a_tenant_id_and_writes_nothing(multi, storage, bad):
    result = await cli(multi, "tenants", "add", bad)

    assert result.exit_code == 1
    assert "is not a tenant id" in result.output
    listed = json.loads((await cli(multi, "tenants", "list", "--json")).output)
    assert bad not in {row["tenantId"] for row in listed}
    assert str(uuid.UUID(int=7)) not in {row["tenantId"] for row in listed}


async def test_add_refuses_an_unprintable_name(multi, storage):
    tenant_id = new_id()

    result = await cli(multi, "tenants", "add", tenant_id, "--name", "bad\x07name")

    assert result.exit_code == 1
    assert await tenant(storage, tenant_id) is None


async def test_adding_a_registered_tenant_says_so_and_changes_nothing(multi, storage):
    tenant_id = new_id()
    assert (await cli(multi, "tenants", "add", tenant_id, "--name", "First")).exit_code == 0

    result = await cli(multi, "tenants", "add", tenant_id, "--name", "Second")

    assert result.exit_code == 0
    assert "is registered already (active): unchanged" in result.output
    found = await tenant(storage, tenant_id)
    assert found is not None and found.name == "First"
    assert len(await envelopes_for(storage, tenant_id)) == 1


async def test_adding_a_suspended_tenant_says_it_is_suspended_and_how_it_resumes(multi, storage):
    tenant_id = new_id()
    now = utcnow()
    await seed(storage, new_tenant(tenant_id, "Revoked", now, ACTIVE).suspended("AADSTS65001 consent revoked", now))

    result = await cli(multi, "tenants", "add", tenant_id)

    assert result.exit_code == 0
    output = " ".join(result.output.split())
    assert "suspended (AADSTS65001 consent revoked)" in output
    assert "consents again" in output
    found = await tenant(storage, tenant_id)
    assert found is not None and found.status == SUSPENDED
    assert await envelopes_for(storage, tenant_id) == []


async def test_list_json_has_one_entry_per_tenant_with_its_subscriptions_reason_and_last_pass(multi, storage):
    served, revoked, other = new_id(), new_id(), new_id()
    now = utcnow().replace(microsecond=0)
    await seed(
        storage,
        new_tenant(served, "Served", now, ACTIVE),
        new_tenant(revoked, "Revoked", now, ACTIVE).suspended("AADSTS7000112 app disabled", now),
    )
    async with table_client(storage.connection_string, SUBSCRIPTIONS_TABLE) as client:
        store = SubscriptionStore(client)
        await store.setup()
        for owner, resource in ((served, "users"), (served, "groups"), (other, "users")):
            await store.save(SubscriptionRecord(scoped_key(owner, resource), resource, "updated", "s", SUBSCRIBED, now))
    async with table_client(storage.connection_string, TENANTS_TABLE) as client:
        await TenantStore(client).mark_pass(served, now - timedelta(minutes=3))

    result = await cli(multi, "tenants", "list", "--json")

    assert result.exit_code == 0, result.output
    rows = {row["tenantId"]: row for row in json.loads(result.output)}
    assert all(list(row) == JSON_FIELDS for row in rows.values())
    assert rows[served] == {
        "tenantId": served,
        "name": "Served",
        "status": "active",
        "subscriptions": 2,
        "reason": "",
        "lastPass": format_time(now - timedelta(minutes=3)),
        "addedAt": format_time(now),
    }
    assert (rows[revoked]["status"], rows[revoked]["subscriptions"], rows[revoked]["lastPass"]) == (SUSPENDED, 0, None)
    assert rows[revoked]["reason"] == "AADSTS7000112 app disabled"


async def test_list_prints_one_line_per_tenant_with_its_full_id(multi, storage):
    tenant_id = new_id()
    await seed(storage, new_tenant(tenant_id, "Fabrikam [Europe]", utcnow(), ACTIVE))

    result = await cli(multi, "tenants", "list")

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if tenant_id in line]
    assert "Fabrikam [Europe]" in line
    assert "active" in line


async def test_remove_with_yes_marks_the_tenant_removing_for_the_next_tick(multi, storage):
    tenant_id = new_id()
    await seed(storage, new_tenant(tenant_id, "Leaving", utcnow(), ACTIVE))

    result = await cli(multi, "tenants", "remove", tenant_id, "--yes")

    assert result.exit_code == 0, result.output
    assert "marked for removal" in result.output
    assert "next renew tick" in result.output
    found = await tenant(storage, tenant_id)
    assert found is not None and found.status == REMOVING


async def test_remove_asks_first_and_a_no_keeps_the_tenant(multi, storage):
    tenant_id = new_id()
    await seed(storage, new_tenant(tenant_id, "Staying", utcnow(), ACTIVE))

    result = await cli(multi, "tenants", "remove", tenant_id, input="n\n")

    assert result.exit_code != 0
    assert f"Remove tenant {tenant_id}?" in result.output
    found = await tenant(storage, tenant_id)
    assert found is not None and found.status == ACTIVE


async def test_removing_an_unknown_tenant_is_a_clear_error(multi, storage):
    tenant_id = new_id()

    result = await cli(multi, "tenants", "remove", tenant_id, "--yes")

    assert result.exit_code == 1
    assert f"no tenant {tenant_id} is registered" in result.output
    assert await tenant(storage, tenant_id) is None


@pytest.mark.parametrize(
    "args",
    [
        ["add", "11111111-1111-1111-1111-111111111111"],
        ["list"],
        ["list", "--json"],
        ["remove", "11111111-1111-1111-1111-111111111111", "--yes"],
    ],
)
async def test_every_command_refuses_in_single_mode_and_writes_nothing(single, storage, args):
    result = await cli(single, "tenants", *args)

    assert result.exit_code == 1
    assert "TENANT_MODE=multi" in " ".join(result.output.split())
    assert await tenant(storage, "11111111-1111-1111-1111-111111111111") is None
