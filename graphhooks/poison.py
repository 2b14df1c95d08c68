"""``graphhooks poison``: look at, replay and purge the poison queues.

Without a queue name a command covers every queue of the account whose name ends in
``-poison`` (graph-notifications-poison and each sink's). Replay moves each message,
exactly as stored, back to the queue named by dropping ``-poison``, with no expiry, and
deletes it from the poison queue only once it is stored there. It moves only what the
queue held when it was counted: at most that many messages, none inserted later, so a
message that fails again during the replay stays in the poison queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.errors import OperatorRequestError
from shared.queues.message_queue import NEVER_EXPIRES

from .runtime import Session, Storage, console, run, session

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.pipeline import PipelineResponse
    from azure.storage.queue import QueueMessage
    from azure.storage.queue.aio import QueueClient

app = typer.Typer(help="Poison queues: messages that failed every attempt.")
SUFFIX = "-poison"
# Storage's largest receive; messages stay invisible this long while they are moved.
BATCH = 32
VISIBILITY_SECONDS = 120

QueueArgument = Annotated[str | None, typer.Argument(help="One poison queue (default: every queue ending in -poison).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass(frozen=True)
class PoisonQueue:
    """A poison queue, how many messages it held (as Storage estimates), when (Storage's clock),
    and where replay sends them."""

    name: str
    count: int
    counted_at: datetime | None = None

    @property
    def target(self) -> str:
        """The queue its messages came from."""
        return self.name.removesuffix(SUFFIX)


async def survey(storage: Storage, name: str | None) -> list[PoisonQueue]:
    """The poison queues asked for, with their message counts."""
    from azure.core.exceptions import ResourceNotFoundError

    if name is not None:
        if not name.endswith(SUFFIX) or name == SUFFIX:
            raise OperatorRequestError(f"{name} is not a poison queue (its name must end in {SUFFIX})")
        names = [name]
    else:
        names = sorted([q.name async for q in storage.queues().list_queues() if q.name.endswith(SUFFIX)])
    found: list[PoisonQueue] = []
    for queue in names:
        dates: list[str] = []
        try:
            properties = await storage.raw_queue(queue).get_queue_properties(raw_response_hook=_dated(dates))
        except ResourceNotFoundError:
            raise OperatorRequestError(f"there is no queue named {queue}") from None
        found.append(PoisonQueue(queue, int(properties.approximate_message_count or 0), _server_time(dates)))
    return found


def _dated(dates: list[str]) -> Callable[[PipelineResponse[Any, Any]], None]:
    """A response hook that keeps each response's Date header in ``dates``."""

    def keep(response: PipelineResponse[Any, Any]) -> None:
        dates.append(response.http_response.headers.get("Date", ""))

    return keep


def _server_time(dates: list[str]) -> datetime | None:
    """Storage's clock from a response's Date header: messages' insertion times use the same clock."""
    try:
        return parsedate_to_datetime(dates[-1]) if dates and dates[-1] else None
    except (TypeError, ValueError):
        return None


def _show(queues: list[PoisonQueue]) -> None:
    if not queues:
        console.print("no poison queue")
        return
    table = Table("poison queue", "messages", "replays to", title="poison queues")
    for queue in queues:
        table.add_row(queue.name, str(queue.count), queue.target)
    console.print(table)


@app.command("list")
def list_poison(ctx: typer.Context, queue: QueueArgument = None) -> None:
    """Each poison queue and how many messages it holds."""
    _show(run(_survey(session(ctx), queue), "counting the poison queues"))


async def _survey(current: Session, queue: str | None) -> list[PoisonQueue]:
    async with current.storage() as storage:
        return await survey(storage, queue)


@app.command("replay")
def replay(ctx: typer.Context, queue: QueueArgument = None, dry_run: DryRun = False, yes: Yes = False) -> None:
    """Move poison messages back to their queue (after a fix), with no expiry."""
    current = session(ctx)
    queues = [q for q in run(_survey(current, queue), "counting the poison queues") if q.count]
    total = sum(q.count for q in queues)
    if not queues:
        console.print("nothing to replay")
        return
    for q in queues:
        verb = "would move" if dry_run else "moving"
        console.print(f"{verb} {q.count} message(s) from {q.name} to {q.target}")
    if dry_run:
        return
    if not yes:
        typer.confirm(f"Move {total} message(s) back to their queues?", abort=True)
    moved = run(_replay(current, queues))
    if moved == total:
        console.print(f"moved {moved} message(s)")
    else:  # Storage's count is an estimate, and another replay may have taken some
        console.print(f"moved {moved} of {total} message(s): the others were gone")


async def _replay(current: Session, queues: list[PoisonQueue]) -> int:
    moved = 0
    async with current.storage() as storage:
        with _progress() as progress:
            for q in queues:
                task = progress.add_task(q.name, total=q.count)
                moved += await _replay_queue(storage, q, progress, task)
    return moved


async def _replay_queue(storage: Storage, queue: PoisonQueue, progress: Progress, task: TaskID) -> int:
    """Move at most ``queue.count`` messages, none inserted after it was counted."""
    source, target = storage.raw_queue(queue.name), storage.raw_queue(queue.target)
    await _ensure(target)
    done = 0
    held: list[QueueMessage] = []  # newer messages (failed again since): kept hidden until the end, never moved
    try:
        while done < queue.count:
            batch = [
                m
                async for m in source.receive_messages(
                    messages_per_page=BATCH, max_messages=BATCH, visibility_timeout=VISIBILITY_SECONDS
                )
            ]
            if not batch:
                break
            counted = [m for m in batch if _counted(queue, m)]
            take = counted[: queue.count - done]
            taken = {id(m) for m in take}
            held += [m for m in batch if id(m) not in taken]
            await asyncio.gather(*(_move(source, target, m) for m in take))
            done += len(take)
            progress.update(task, completed=done)
    finally:
        # Shown again at once: the next replay, or the operator's `poison list`, sees them.
        await asyncio.gather(*(_release(source, m) for m in held))
    return done


def _counted(queue: PoisonQueue, message: QueueMessage) -> bool:
    """True when the message was in the queue when it was counted (insertion times are to the second)."""
    inserted = message.inserted_on
    return queue.counted_at is None or inserted is None or inserted <= queue.counted_at


async def _release(source: QueueClient, message: QueueMessage) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with contextlib.suppress(ResourceNotFoundError):
        await source.update_message(message, visibility_timeout=0)


async def _move(source: QueueClient, target: QueueClient, message: QueueMessage) -> None:
    # Stored first, deleted after: a failure in between repeats a message, never loses one.
    await target.send_message(message.content, time_to_live=NEVER_EXPIRES)
    await source.delete_message(message)


async def _ensure(queue: QueueClient) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        await queue.create_queue()


@app.command("purge")
def purge(ctx: typer.Context, queue: QueueArgument = None, dry_run: DryRun = False, yes: Yes = False) -> None:
    """Delete every message of the poison queues, for good."""
    current = session(ctx)
    queues = [q for q in run(_survey(current, queue), "counting the poison queues") if q.count]
    if not queues:
        console.print("nothing to purge")
        return
    for q in queues:
        console.print(f"{'would delete' if dry_run else 'deleting'} {q.count} message(s) from {q.name}")
    if dry_run:
        return
    if not yes:
        typer.confirm(f"Delete {sum(q.count for q in queues)} message(s) for good?", abort=True)
    run(_purge(current, queues))
    console.print(f"purged {len(queues)} queue(s)")


async def _purge(current: Session, queues: list[PoisonQueue]) -> None:
    async with current.storage() as storage:
        with _progress() as progress:
            task = progress.add_task("purging", total=len(queues))
            for q in queues:
                await storage.raw_queue(q.name).clear_messages()
                progress.advance(task)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
