"""``graphhooks eventgrid replay``: store the notifications Event Grid dead-lettered, as the trigger would have.

Event Grid writes an event it could not deliver (for 24 hours, or 30 attempts) to the
dead-letter container as a blob holding a JSON array of events (learn
azure/event-grid/manage-event-delivery). Replay hands each event to the same checks and
queue as the ``eventgrid`` trigger, and deletes a blob only once every event in it is
stored or refused (counted by reason, as the trigger counts them). A blob whose events
cannot all be stored stays, for the next replay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from shared.errors import OperatorRequestError

from .runtime import Session, console, run, session

app = typer.Typer(help="Event Grid delivery: replay what Event Grid dead-lettered.")
# infra/main.bicep's container, where scripts/activate-event-grid.sh sends the dead letters.
CONTAINER = "eventgrid-deadletter"

ContainerOption = Annotated[str, typer.Option("--container", help="The dead-letter container.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass
class Replayed:
    """What a replay did: blobs and events read, blobs deleted."""

    blobs: int = 0
    events: int = 0
    deleted: int = 0


def events_of(text: bytes) -> list[dict[str, Any]]:
    """The events one dead-letter blob holds (an array, or a single event)."""
    body = json.loads(text)
    events = body if isinstance(body, list) else [body]
    if not all(isinstance(e, dict) for e in events):
        raise OperatorRequestError("a dead-letter blob holds something other than events")
    return events


@app.command("replay")
def replay(
    ctx: typer.Context, container: ContainerOption = CONTAINER, dry_run: DryRun = False, yes: Yes = False
) -> None:
    """Store the dead-lettered notifications (after a fix), then delete their blobs."""
    current = session(ctx)
    if not dry_run and not yes:
        typer.confirm(f"Store the notifications dead-lettered in {container}, and delete their blobs?", abort=True)
    done = run(_replay(current, container, dry_run), "replaying the dead letters")
    verb = "would store" if dry_run else "stored or refused"
    console.print(f"{verb} {done.events} event(s) from {done.blobs} blob(s); {done.deleted} blob(s) deleted")


async def _replay(current: Session, container: str, dry_run: bool) -> Replayed:
    from azure.core.exceptions import ResourceNotFoundError

    from shared.app.receivers import build_ingest
    from shared.stores.clients import container_client

    done = Replayed()
    receivers = None if dry_run else await build_ingest(current.values)
    try:
        async with container_client(current.connection, container) as blobs:
            try:
                names = [b.name async for b in blobs.list_blobs()]
            except ResourceNotFoundError:
                raise OperatorRequestError(f"there is no container named {container}") from None
            for name in names:
                events = events_of(await (await blobs.download_blob(name)).readall())
                done.blobs += 1
                done.events += len(events)
                if receivers is None:
                    continue
                for event in events:
                    # A CloudEvent (the schema activate-event-grid.sh sets) or an Event Grid-schema event.
                    kind = str(event.get("type") or event.get("eventType") or "")
                    await receivers.event_grid.accept(kind, event.get("data"))  # NotStoredError: the blob stays
                await blobs.delete_blob(name)
                done.deleted += 1
    finally:
        if receivers is not None:
            await receivers.close()
    return done
