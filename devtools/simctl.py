"""`python -m devtools.simctl` (`make sim ARGS=...`): drive the Graph simulator from a terminal.

Changes made here are what a user would make in OneDrive: the simulator sends Graph's
change notification to the local host, which reads the drive's delta and puts change
events on the `graph-changes` queue. The simulator is found at ``--control-url``, else
``GRAPHSIM_CONTROL_URL``, else the running `make run` stack (``.run/local.settings.json``),
else `make run`'s fixed port. Examples, with `make run` going in another terminal:

    python -m devtools.simctl files create demo-drive report.txt --content draft
    python -m devtools.simctl files update demo-drive <item-id> --content final
    python -m devtools.simctl files rename demo-drive <item-id> "report (final).txt"
    python -m devtools.simctl files delete demo-drive <item-id>
    python -m devtools.simctl subscriptions list

Every command works on one tenant's data: ``--tenant ID`` (before the command), else the
simulator's home tenant. Tenants themselves, their consent and their faults:

    python -m devtools.simctl tenants add <tenant-id> [--no-consent]
    python -m devtools.simctl tenants list
    python -m devtools.simctl tenants revoke <tenant-id> --code 65001
    python -m devtools.simctl tenants restore <tenant-id>
    python -m devtools.simctl tenants throttle <tenant-id> --seconds 600 --status 429 --retry-after 10
    python -m devtools.simctl consent next --tenant <tenant-id> [--deny]
    python -m devtools.simctl --tenant <tenant-id> drives create demo-drive
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import aiohttp
import typer

from graphhooks import localstack

from .simclient import SimControl

T = TypeVar("T")
DEFAULT_CONTROL_URL = "http://127.0.0.1:8800/_sim"  # make run's fixed port (local.settings.example.json)
ENV_CONTROL_URL = "GRAPHSIM_CONTROL_URL"

app = typer.Typer(
    name="simctl",
    help="Drive the Graph simulator: create, change and delete files, and look at its subscriptions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
drives = typer.Typer(help="Simulated OneDrive drives.", no_args_is_help=True)
files = typer.Typer(help="Files and folders in a drive: the host hears of each change.", no_args_is_help=True)
subscriptions = typer.Typer(help="The subscriptions Graph (the simulator) holds.", no_args_is_help=True)
tenants = typer.Typer(
    help="The tenants the simulator serves: consent, revoked consent, 429 storms.", no_args_is_help=True
)
consent = typer.Typer(help="What the admin consent endpoint answers next.", no_args_is_help=True)
app.add_typer(drives, name="drives")
app.add_typer(files, name="files")
app.add_typer(subscriptions, name="subscriptions")
app.add_typer(tenants, name="tenants")
app.add_typer(consent, name="consent")

Drive = Annotated[str, typer.Argument(metavar="DRIVE", help="A drive id, e.g. demo-drive (`drives list`).")]
ItemId = Annotated[str, typer.Argument(metavar="ITEM_ID", help="The item's id (printed by `files create`).")]
TenantId = Annotated[str, typer.Argument(metavar="TENANT_ID", help="A tenant id (`tenants list`).")]


@dataclass(frozen=True)
class Target:
    """The simulator's control API and the tenant whose data the commands change (None: the home tenant)."""

    url: str
    tenant: str | None = None


class TenantControl(SimControl):
    """A control client whose every call names the tenant (the control API's ``tenant`` query parameter)."""

    def __init__(self, control_url: str, tenant: str | None) -> None:
        super().__init__(control_url)
        self.tenant = tenant

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, limit_seconds: float | None = None
    ) -> Any:
        """As SimControl.call, with ``?tenant=`` added when a tenant was chosen."""
        if self.tenant:
            path += ("&" if "?" in path else "?") + "tenant=" + quote(self.tenant, safe="")
        return await super().call(method, path, body, limit_seconds)


def control_url(given: str | None) -> str:
    """The control API's URL: given, from the environment, from the running stack, or the default."""
    if given:
        return given
    if os.environ.get(ENV_CONTROL_URL):
        return os.environ[ENV_CONTROL_URL]
    stack = localstack.read_stack(localstack.STACK_SETTINGS) if localstack.running() else None
    found = stack.get("controlUrl") if stack else None
    return str(found) if found else DEFAULT_CONTROL_URL


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--control-url",
            metavar="URL",
            help=f"The simulator's control API (default: ${ENV_CONTROL_URL}, the running `make run`, or"
            f" {DEFAULT_CONTROL_URL}).",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="TENANT_ID", help="The tenant whose data to change (default: the home one)."),
    ] = None,
) -> None:
    """Find the simulator."""
    ctx.obj = Target(control_url(url), tenant)


def call(ctx: typer.Context, action: Callable[[SimControl], Awaitable[T]]) -> T:
    """Run one control call; a failure is one line on stderr and exit status 1."""
    target: Target = ctx.obj
    url = target.url

    async def go() -> T:
        async with TenantControl(url, target.tenant) as control:
            return await action(control)

    try:
        return asyncio.run(go())
    except aiohttp.ClientConnectionError:
        typer.echo(f"error: cannot reach the Graph simulator at {url}: is `make run` running?", err=True)
    except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@drives.command("list")
def list_drives(ctx: typer.Context) -> None:
    """Each drive, with its number of items."""
    for drive in call(ctx, lambda c: c.drives()):
        typer.echo(f"{drive['id']}  {drive['items']} item(s)")


@drives.command("create")
def create_drive(
    ctx: typer.Context, drive_id: Annotated[str, typer.Argument(metavar="DRIVE", help="The new drive's id.")]
) -> None:
    """A new, empty drive (subscribe to drives/DRIVE/root to hear of its changes)."""
    drive = call(ctx, lambda c: c.create_drive(drive_id))
    typer.echo(f"created drive {drive['id']}")


@files.command("create")
def create_file(
    ctx: typer.Context,
    drive_id: Drive,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The file's name, in the drive's root.")],
    content: Annotated[str, typer.Option(metavar="TEXT", help="The file's content.")] = "",
    folder: Annotated[bool, typer.Option("--folder", help="Create a folder, not a file.")] = False,
) -> None:
    """Create a file (or a folder) in the drive's root; prints its item id."""
    item = call(ctx, lambda c: c.create_item(drive_id, name, content, folder))
    typer.echo(f"created {item['name']}: item {item['id']}")


@files.command("update")
def update_file(
    ctx: typer.Context,
    drive_id: Drive,
    item_id: ItemId,
    content: Annotated[str, typer.Option(metavar="TEXT", help="The new content.")],
) -> None:
    """Change a file's content."""
    item = call(ctx, lambda c: c.update_item(drive_id, item_id, content))
    typer.echo(f"updated {item['name']}")


@files.command("rename")
def rename_file(
    ctx: typer.Context,
    drive_id: Drive,
    item_id: ItemId,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new name.")],
) -> None:
    """Rename a file or folder."""
    item = call(ctx, lambda c: c.rename_item(drive_id, item_id, name))
    typer.echo(f"renamed to {item['name']}")


@files.command("delete")
def delete_file(ctx: typer.Context, drive_id: Drive, item_id: ItemId) -> None:
    """Delete a file (or a folder and what it holds)."""
    call(ctx, lambda c: c.delete_item(drive_id, item_id))
    typer.echo(f"deleted {item_id}")


@files.command("show")
def show_file(ctx: typer.Context, drive_id: Drive, item_id: ItemId) -> None:
    """An item as Graph returns it (JSON)."""
    typer.echo(json.dumps(call(ctx, lambda c: c.item(drive_id, item_id)), indent=2))


@subscriptions.command("list")
def list_subscriptions(ctx: typer.Context) -> None:
    """Each live subscription: id, resource, changeType, expiry (never its clientState)."""
    found: list[dict[str, Any]] = call(ctx, lambda c: c.subscriptions())
    for sub in found:
        typer.echo(f"{sub['id']}  {sub['resource']}  {sub['changeType']}  expires {sub['expirationDateTime']}")
    typer.echo(f"{len(found)} subscription(s)")


@subscriptions.command("lifecycle")
def lifecycle(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(metavar="SUBSCRIPTION_ID", help="From `subscriptions list`.")],
    event: Annotated[
        str, typer.Argument(metavar="EVENT", help="missed, reauthorizationRequired or subscriptionRemoved.")
    ],
) -> None:
    """Send a lifecycle notification for a subscription, as Graph would."""
    call(ctx, lambda c: c.lifecycle(subscription_id, event))
    typer.echo(f"sent {event} for {subscription_id}")


def _tenant_line(found: dict[str, Any]) -> str:
    state = "active" if found["active"] else f"revoked (AADSTS{found['revoked']})" if found["revoked"] else "no consent"
    storm = found.get("storm")
    extra = f"  storm {storm['status']} for {storm['remainingSeconds']:.0f} s" if storm else ""
    return f"{found['tenant']}  {state}{'  (home)' if found['home'] else ''}{extra}"


@tenants.command("list")
def list_tenants(ctx: typer.Context) -> None:
    """Each tenant: its id, whether the app may use it now, and any 429 storm."""
    found: list[dict[str, Any]] = call(ctx, lambda c: c.call("GET", "/tenants"))["value"]
    for tenant in found:
        typer.echo(_tenant_line(tenant))
    typer.echo(f"{len(found)} tenant(s)")


@tenants.command("add")
def add_tenant(
    ctx: typer.Context,
    tenant_id: TenantId,
    consented: Annotated[
        bool, typer.Option("--consent/--no-consent", help="Whether its admin has consented (default: yes).")
    ] = True,
) -> None:
    """Add a tenant (or set its consent): its token endpoint then answers, or AADSTS65001 without consent."""
    found = call(ctx, lambda c: c.call("POST", "/tenants", {"tenant": tenant_id, "consented": consented}))
    typer.echo(_tenant_line(found))


@tenants.command("revoke")
def revoke_tenant(
    ctx: typer.Context,
    tenant_id: TenantId,
    code: Annotated[
        int, typer.Option(metavar="AADSTS", help="65001 (no consent), 7000112 (app disabled) or 700016 (app deleted).")
    ] = 65001,
) -> None:
    """Revoke consent: its token requests fail with that AADSTS error, its tokens get 401 from Graph."""
    found = call(ctx, lambda c: c.call("POST", f"/tenants/{quote(tenant_id, safe='')}/revoke", {"code": code}))
    typer.echo(_tenant_line(found))


@tenants.command("restore")
def restore_tenant(ctx: typer.Context, tenant_id: TenantId) -> None:
    """Bring consent back."""
    found = call(ctx, lambda c: c.call("POST", f"/tenants/{quote(tenant_id, safe='')}/restore"))
    typer.echo(_tenant_line(found))


@tenants.command("throttle")
def throttle_tenant(
    ctx: typer.Context,
    tenant_id: TenantId,
    seconds: Annotated[float, typer.Option(metavar="SECONDS", help="How long (simulator time); 0 ends a storm.")],
    status: Annotated[int, typer.Option(metavar="STATUS", help="429 or 503.")] = 429,
    retry_after: Annotated[int, typer.Option(metavar="SECONDS", help="The Retry-After header's value.")] = 1,
) -> None:
    """A storm: every Graph request of the tenant answers STATUS with Retry-After for SECONDS."""
    body = {"seconds": seconds, "status": status, "retryAfter": retry_after}
    found = call(ctx, lambda c: c.call("POST", f"/tenants/{quote(tenant_id, safe='')}/throttle", body))
    typer.echo(f"{tenant_id}: {found['status']} for {found['remainingSeconds']:.0f} s")


@consent.command("next")
def next_consent(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option("--tenant", metavar="TENANT_ID", help="The tenant whose admin consents.")
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="The admin refuses: an error goes back to the app.")] = False,
) -> None:
    """What the next admin consent request does (default: the tenant of `simctl --tenant`, else the home one)."""
    target: Target = ctx.obj
    body = {"decision": "deny" if deny else "accept", "tenant": tenant or target.tenant}
    call(ctx, lambda c: c.call("POST", "/consent", body))
    typer.echo(f"the next admin consent {'is denied' if deny else 'is granted'}")


def main() -> None:
    """Entry point for `python -m devtools.simctl`."""
    app(prog_name="python -m devtools.simctl")


if __name__ == "__main__":
    main()
