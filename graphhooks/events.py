"""``graphhooks events tail``: show change events as they arrive, without taking them from consumers.

Peeking graph-changes sees only its first 32 messages, so the command opens a tap: a
queue ``tap-<random>`` registered in table ``taps`` (renewed every 30 s) that the app's
event outlet copies every event to while the command runs. Ctrl-C deletes the queue and
its row; a tap whose watcher died lapses after two minutes and is cleaned up by the
next ``events tail``. Events come as the app sends them (EVENT_FORMAT): native events or
CloudEvents, printed alike (``--json`` prints each message as it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from shared.clock import utcnow
from shared.model.event_formats import native_event
from shared.model.names import TAPS_TABLE
from shared.stores.taps import CACHE_SECONDS, HEARTBEAT, TAP_PREFIX, TapStore

from .runtime import Session, Storage, console, errors, failures, session

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

app = typer.Typer(help="Change events.")
POLL_SECONDS = 0.5


@app.command("tail")
def tail(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print change events as they arrive, until Ctrl-C (the consumers of graph-changes still get them)."""
    with failures(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(session(ctx), as_json))


async def _tail(current: Session, as_json: bool) -> None:
    async with current.storage() as storage:
        taps = TapStore(storage.table(TAPS_TABLE))
        await taps.setup()
        await _sweep_lapsed(storage, taps)
        name = f"{TAP_PREFIX}{secrets.token_hex(8)}"
        queue = storage.queue(name)
        await queue.create_queue()
        try:
            await taps.register(name, utcnow())
            # Every app instance reads the taps again within CACHE_SECONDS: from then on, no event is missed.
            with errors.status(f"opening tap {name}: the app sees it within {CACHE_SECONDS:g} s"):
                await asyncio.sleep(CACHE_SECONDS)
            errors.print(f"tapping change events into {name}: Ctrl-C to stop", highlight=False)
            await _follow(queue, taps, name, as_json)
        finally:
            # Shielded: Ctrl-C cancels the loop, and the tap must still go.
            await asyncio.shield(_close(storage, taps, name))


async def _follow(queue: QueueClient, taps: TapStore, name: str, as_json: bool) -> None:
    renewed = time.monotonic()
    while True:
        if time.monotonic() - renewed >= HEARTBEAT.total_seconds():
            await taps.register(name, utcnow())
            renewed = time.monotonic()
        messages = [m async for m in queue.receive_messages(messages_per_page=32, max_messages=32)]
        for message in messages:
            _print(message.content, as_json)
            await queue.delete_message(message)
        if not messages:
            await asyncio.sleep(POLL_SECONDS)


def _print(text: str, as_json: bool) -> None:
    if as_json:
        # Plain print: one line per event, nothing wrapped or highlighted, for jq and friends.
        print(text, flush=True)
        return
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        console.print(escape(text), highlight=False)
        return
    if not isinstance(message, dict):
        console.print(escape(text), highlight=False)
        return
    # EVENT_FORMAT=cloudevents: the line shows the CloudEvent's data, the native event.
    event: dict[str, Any] = native_event(message)
    item = event.get("item")
    name = ""
    if isinstance(item, dict):
        name = item.get("name") or item.get("displayName") or item.get("subject") or ""
    console.print(
        f"{escape(str(event.get('observedAt', '')))} [bold]{escape(str(event.get('changeType', '')))}[/] "
        f"{escape(str(event.get('kind', '')))} {escape(str(event.get('itemId', '')))} "
        f"{escape(str(name))} [dim]{escape(str(event.get('resource', '')))}[/]",
        highlight=False,
        soft_wrap=True,
    )


async def _close(storage: Storage, taps: TapStore, name: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with contextlib.suppress(ResourceNotFoundError):
        await taps.remove(name)
    with contextlib.suppress(ResourceNotFoundError):
        await storage.queue(name).delete_queue()


async def _sweep_lapsed(storage: Storage, taps: TapStore) -> None:
    """Remove the taps of watchers that died without closing them (their rows have lapsed)."""
    now = utcnow()
    for tap in await taps.list():
        if tap.expires_at <= now and tap.queue.startswith(TAP_PREFIX):
            await _close(storage, taps, tap.queue)
