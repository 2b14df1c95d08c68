"""``graphhooks poison``: look at, replay and purge the poison queues.

Without a queue name a command covers every queue of the account whose name ends in
``-poison`` (graph-notifications-poison and each sink's). Replay moves each message,
exactly as stored, back to the queue named by dropping ``-poison``, with no expiry, and
deletes it from the poison queue only once it is stored there.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.errors import OperatorRequestError
from shared.queues.message_queue import NEVER_EXPIRES

from .runtime import Session, Storage, console, run, session

if TYPE_CHECKING:
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
    """A poison queue, how many messages it holds (as Storage estimates), and where replay sends them."""

    name: str
    count: int

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
        try:
            properties = await storage.raw_queue(queue).get_queue_properties()
        except ResourceNotFoundError:
            raise OperatorRequestError(f"there is no queue named {queue}") from None
        found.append(PoisonQueue(queue, int(properties.approximate_message_count or 0)))
    return found


def _show(queues: list[PoisonQueue]) -> None:
    table = Table("poison queue", "messages", "replays to", title="poison queues")
    for queue in queues:
        table.add_row(queue.name, str(queue.count), queue.target)
    console.print(table)
    if not queues:
        console.print("no poison queue")


@app.command("list")
def list_poison(ctx: typer.Context, queue: QueueArgument = None) -> None:
    """Each poison queue and how many messages it holds."""
    _show(run(_survey(session(ctx), queue)))


async def _survey(current: Session, queue: str | None) -> list[PoisonQueue]:
    async with current.storage() as storage:
        return await survey(storage, queue)


@app.command("replay")
def replay(ctx: typer.Context, queue: QueueArgument = None, dry_run: DryRun = False, yes: Yes = False) -> None:
    """Move poison messages back to their queue (after a fix), with no expiry."""
    current = session(ctx)
    queues = [q for q in run(_survey(current, queue)) if q.count]
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
    console.print(f"moved {moved} message(s)")


async def _replay(current: Session, queues: list[PoisonQueue]) -> int:
    moved = 0
    async with current.storage() as storage:
        with _progress() as progress:
            for q in queues:
                task = progress.add_task(q.name, total=q.count)
                done = 0
                source, target = storage.raw_queue(q.name), storage.raw_queue(q.target)
                await _ensure(target)
                while True:
                    batch = [
                        m
                        async for m in source.receive_messages(
                            messages_per_page=BATCH, max_messages=BATCH, visibility_timeout=VISIBILITY_SECONDS
                        )
                    ]
                    if not batch:
                        break
                    await asyncio.gather(*(_move(source, target, m) for m in batch))
                    moved += len(batch)
                    done += len(batch)
                    # The count was Storage's estimate: the bar grows if more came.
                    progress.update(task, completed=done, total=max(q.count, done))
    return moved


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
    queues = [q for q in run(_survey(current, queue)) if q.count]
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
