"""``graphhooks cursor reset``: force a full resync of one subscription's resource.

The app's own Synchronizer.resync turns the cursor into a resync pass (the same as a
lifecycle ``missed``): an enumeration that reports what changed since the last completed
pass and, from the index rows it did not see, the deletions. A sync request on the
notifications queue then starts it without waiting for a notification or the sweep.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shared.clock import utcnow
from shared.errors import OperatorRequestError
from shared.model.changes import SourceRegistry
from shared.model.names import NOTIFICATIONS_QUEUE, SOURCE_STATE_TABLE
from shared.model.notifications import Envelope
from shared.model.resources import resource_key
from shared.queues.message_queue import MessageQueue
from shared.stores.cursors import CursorStore
from shared.stores.items import ItemIndex
from shared.stores.source_state import SourceStateStore
from shared.stores.subscriptions import SubscriptionStore
from shared.sync.synchronizer import Synchronizer

from .runtime import Session, console, run, session
from .subscriptions import CURSORS_TABLE, SUBSCRIPTIONS_TABLE

app = typer.Typer(help="Delta cursors: where each subscription's delta passes stand.")
ITEMS_TABLE = "deltaitems"


@app.command("reset")
def reset(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Graph's subscription id (see `subscriptions list`).")],
) -> None:
    """Force a full resync of one subscription: enumerate its resource, report changes and deletions."""
    resource = run(_reset(session(ctx), subscription_id), "resetting the cursor")
    console.print(f"resync of {resource} requested: the next run enumerates it")


async def _reset(current: Session, subscription_id: str) -> str:
    async with current.storage() as storage:
        record = await SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE)).find(subscription_id)
        if record is None:
            raise OperatorRequestError(f"no stored subscription has id {subscription_id!r} (see `subscriptions list`)")
        cursors = CursorStore(storage.table(CURSORS_TABLE))
        notifications = MessageQueue(storage.queue(NOTIFICATIONS_QUEUE))
        # Only the cursor is touched: no source is read, so no Graph settings are needed.
        synchronizer = Synchronizer(
            cursors,
            ItemIndex(storage.table(ITEMS_TABLE)),
            SourceRegistry([]),
            notifications,
            notifications,
            SourceStateStore(storage.table(SOURCE_STATE_TABLE)),
        )
        if not await synchronizer.resync(record.resource):
            cursor = await cursors.load(resource_key(record.resource))
            if not cursor.exists:
                raise OperatorRequestError(f"{record.resource} has no cursor yet: its first pass has not started")
            if cursor.state.in_progress and cursor.state.mode is not None:
                raise OperatorRequestError(
                    f"{record.resource} has a {cursor.state.mode.value} pass in progress: try again once it completes"
                )
            raise OperatorRequestError(f"the cursor of {record.resource} kept changing: try again")
        item = {"subscriptionId": record.subscription_id, "changeType": "updated", "resource": record.resource}
        await notifications.send(Envelope("cli", utcnow(), [item]).to_json())
        return record.resource
