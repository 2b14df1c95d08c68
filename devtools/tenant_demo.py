"""`make demo ARGS=--tenants 3`: one deployment serving several tenants, their events side by side.

Starts the stack with TENANT_MODE=multi; registers the tenants in the Graph simulator
(its home tenant and others), each with a drive of the same id; onboards the second
tenant through the real admin consent flow (the app's /api/consent/start, the
simulator's identity platform, back to /api/consent) and the others with
`graphhooks tenants add`; then changes a file in every tenant and prints each tenant's
events in a column of its own, with the tenantId each event carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from .messages import receive_json
from .simctl import TenantControl
from .stack import DEMO_DRIVE, LocalStack, start_stack

CHANGES_QUEUE = "graph-changes"
NAMES = ("Contoso", "Fabrikam", "Northwind", "Tailspin", "Wingtip", "Adatum", "Litware", "Proseware")
MAX_TENANTS = len(NAMES)
# The tenant (by position) that connects through admin consent; the others are added with the CLI.
BY_CONSENT = 1
STEP_PAUSE = 1.5  # at most one delta query per drive per second: spaced steps show as events of their own
COLUMN = 34
INDENT = " " * len("[00:00:00] ")  # events lines begin with their time
WAIT_SECONDS = 60.0
Event = dict[str, Any]


@dataclass
class DemoTenant:
    """One customer tenant of the demo: its name, its id, and how it connects."""

    name: str
    tenant_id: str
    by_consent: bool
    item_id: str = ""

    @property
    def file_name(self) -> str:
        """The file the demo creates in the tenant's drive."""
        return f"{self.name}.docx"


def demo_tenants(home_id: str, count: int) -> list[DemoTenant]:
    """The simulator's home tenant first, then new ones; the second connects by admin consent."""
    ids = [home_id.lower(), *(str(uuid.uuid4()) for _ in range(count - 1))]
    return [DemoTenant(NAMES[n], tenant_id, n == BY_CONSENT) for n, tenant_id in enumerate(ids)]


def row(cells: list[str]) -> str:
    """One line of the side-by-side view."""
    return " | ".join(f"{cell[:COLUMN]:<{COLUMN}}" for cell in cells).rstrip()


def cell(event: Event) -> str:
    """An event in its tenant's column: change, name, and the tenantId it carries (short)."""
    item = event.get("item") or {}
    name = str(item.get("name", "(deleted)"))
    return f"{event['changeType']:<8} {name[:16]:<16} {str(event.get('tenantId'))[:8]}"


async def run_tenants(count: int, once: bool, run_dir: Path, stop: asyncio.Event) -> int:
    """Run the multi-tenant demo; with ``once``, stop after every tenant's file events arrived."""
    print(f"Starting Azurite, the Graph simulator and the local host (TENANT_MODE=multi, {count} tenants) ...")
    stack = await asyncio.to_thread(start_stack, run_dir, extra_env={"TENANT_MODE": "multi"})
    try:
        print(f"  local host      {stack.base_url} (log: {run_dir / 'host.log'})")
        print(f"  Graph simulator {stack.sim.info['graph_url']}  identity {stack.env['AZURE_AUTHORITY_HOST']}")
        stack.write_settings()  # for `graphhooks --settings ...`
        tenants = demo_tenants(str(stack.sim.info["tenant_id"]), count)
        await register_in_simulator(stack, tenants)
        for tenant in tenants:
            if tenant.by_consent:
                await onboard_by_consent(stack, tenant)
            else:
                await asyncio.to_thread(onboard_with_cli, stack, tenant)
        if not await wait_until_subscribed(stack, tenants, stop):
            return 1
        print()
        for tenant in tenants:
            how = "admin consent" if tenant.by_consent else "graphhooks tenants add"
            print(f"  {tenant.name:<10} tenantId {tenant.tenant_id}  (connected by {how})")
        print(f"{INDENT}{row([t.name for t in tenants])}")
        print(f"{INDENT}{row(['-' * COLUMN for _ in tenants])}", flush=True)
        seen: dict[tuple[str, str], Event] = {}
        printer = asyncio.create_task(print_columns(stack, tenants, seen, stop))
        await change_files(stack, tenants)
        if once:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline and not stop.is_set() and not complete(seen, tenants):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
            stop.set()
        else:
            sim = f".venv/bin/python -m devtools.simctl --control-url {stack.sim.control_url}"
            print("Waiting for more changes; change a file in a tenant's drive from another terminal:")
            print(f"  {sim} --tenant {tenants[-1].tenant_id} files create {DEMO_DRIVE} notes.txt --content hi")
            print("Press Ctrl-C to stop.", flush=True)
        await printer
        if once and not complete(seen, tenants):
            print("not every tenant's file events arrived; see the host log", file=sys.stderr)
            return 1
        return 0
    finally:
        print("Stopping ...", flush=True)
        await asyncio.to_thread(stack.stop)


async def register_in_simulator(stack: LocalStack, tenants: list[DemoTenant]) -> None:
    """The simulator's tenants, each with the same drive id; the consenting one has not consented yet."""
    async with TenantControl(stack.sim.control_url, None) as home:
        for tenant in tenants[1:]:
            await home.call("POST", "/tenants", {"tenant": tenant.tenant_id, "consented": not tenant.by_consent})
    for tenant in tenants:
        async with TenantControl(stack.sim.control_url, tenant.tenant_id) as control:
            await control.create_drive(DEMO_DRIVE)


async def onboard_by_consent(stack: LocalStack, tenant: DemoTenant) -> None:
    """The admin consent flow over real HTTP: start, the identity platform (the simulator), the callback."""
    print(f"{tenant.name} connects by admin consent:")
    trusted = ssl.create_default_context(cafile=stack.env["AZURE_AUTHORITY_CA_FILE"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = f"{stack.base_url}/api/consent/start"
        async with session.get(start, params={"name": tenant.name}, allow_redirects=False) as answer:
            consent_url = _redirect(answer, "/api/consent/start")
        print(f"  > GET /api/consent/start?name={tenant.name}: 302 to {consent_url.split('?')[0]}")
        # No admin signs in to the simulator: sim_tenant says which tenant's admin accepts.
        params = {"sim_tenant": tenant.tenant_id}
        async with session.get(consent_url, params=params, ssl=trusted, allow_redirects=False) as answer:
            back = _redirect(answer, "the admin consent endpoint")
        print(f"  > the admin of {tenant.tenant_id} accepts: 302 back to {back.split('?')[0]}")
        async with session.get(back, allow_redirects=False) as answer:
            page = await answer.text()
            if answer.status != 200:
                raise RuntimeError(f"/api/consent answered {answer.status}: {words(page)}")
        print(f"  > /api/consent answered 200: {words(page)}", flush=True)


def _redirect(answer: aiohttp.ClientResponse, what: str) -> str:
    if answer.status != 302:
        raise RuntimeError(f"{what} answered {answer.status}, not a redirect")
    return str(answer.headers["Location"])


def words(page: str) -> str:
    """A page's text without its markup."""
    found = re.search(r"<p>(.*?)</p>", page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1) if found else page)).strip()


def onboard_with_cli(stack: LocalStack, tenant: DemoTenant) -> None:
    """`graphhooks tenants add`, as an operator runs it against this stack's settings."""
    args = ["tenants", "add", tenant.tenant_id, "--name", tenant.name]
    print(f"{tenant.name}: $ graphhooks {' '.join(args)}")
    command = [sys.executable, "-m", "graphhooks.cli", "--settings", str(stack.settings_path), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    for line in (done.stdout + done.stderr).splitlines():
        print(f"  {line}")
    if done.returncode != 0:
        raise RuntimeError(f"graphhooks tenants add exited with status {done.returncode}")


async def wait_until_subscribed(stack: LocalStack, tenants: list[DemoTenant], stop: asyncio.Event) -> bool:
    """Until every tenant's subscription exists at Graph and its first delta pass ran; False if stopped."""
    deadline = time.monotonic() + WAIT_SECONDS
    waiting = list(tenants)
    while waiting:
        if stop.is_set():
            return False
        if time.monotonic() > deadline:
            names = ", ".join(t.name for t in waiting)
            raise TimeoutError(f"no subscription for {names}; see the host log")
        for tenant in list(waiting):
            async with TenantControl(stack.sim.control_url, tenant.tenant_id) as control:
                subscriptions = await control.subscriptions()
                runs = (await control.stats())["drives"].get(DEMO_DRIVE, {}).get("deltaRuns", 0)
            if subscriptions and runs:
                print(f"{tenant.name}: subscribed to {subscriptions[0]['resource']} (id {subscriptions[0]['id']})")
                waiting.remove(tenant)
        await asyncio.sleep(0.2)
    return True


async def change_files(stack: LocalStack, tenants: list[DemoTenant]) -> None:
    """Create a file in every tenant's drive, then update each."""
    await asyncio.sleep(STEP_PAUSE)
    for tenant in tenants:
        async with TenantControl(stack.sim.control_url, tenant.tenant_id) as control:
            item = await control.create_item(DEMO_DRIVE, tenant.file_name, "draft")
        tenant.item_id = str(item["id"])
    print(f"{INDENT}{row([f'> created {t.file_name}' for t in tenants])}", flush=True)
    await asyncio.sleep(STEP_PAUSE)
    for tenant in tenants:
        async with TenantControl(stack.sim.control_url, tenant.tenant_id) as control:
            await control.update_item(DEMO_DRIVE, tenant.item_id, f"{tenant.name}'s figures")
    print(f"{INDENT}{row(['> updated it' for _ in tenants])}", flush=True)


async def print_columns(
    stack: LocalStack, tenants: list[DemoTenant], seen: dict[tuple[str, str], Event], stop: asyncio.Event
) -> None:
    """Print each event from graph-changes in its tenant's column until ``stop`` is set."""
    column = {t.tenant_id: n for n, t in enumerate(tenants)}
    while not stop.is_set():
        for event in await receive_json(stack.azurite.connection_string, CHANGES_QUEUE):
            tenant = str(event.get("tenantId"))
            seen[(tenant, str(event["id"]))] = event
            cells = [""] * len(tenants)
            cells[column.get(tenant, 0)] = cell(event)
            print(f"[{datetime.now():%H:%M:%S}] {row(cells)}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def complete(seen: dict[tuple[str, str], Event], tenants: list[DemoTenant]) -> bool:
    """Whether every tenant's file was seen created and updated, in events carrying that tenant's id."""
    for tenant in tenants:
        kinds = [
            e["changeType"]
            for (tenant_id, _), e in seen.items()
            if tenant_id == tenant.tenant_id and e.get("itemId") == tenant.item_id
        ]
        if "created" not in kinds or "updated" not in kinds:
            return False
    return True
