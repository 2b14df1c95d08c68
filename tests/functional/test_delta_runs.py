"""Delta runs at real sizes and under faults: page by page, resumable, and no change lost or mislabelled.

Real Azurite and the Graph simulator; the queue trigger is played by the stack's pump.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.messages import receive_json
from shared.clock import utcnow
from shared.model.changes import PLAIN, SourceRegistry
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.model.notifications import Envelope
from shared.model.resources import resource_key
from shared.stores.clients import queue_client
from shared.sync.coalescing import Action
from shared.sync.synchronizer import Synchronizer
from tests.functional.stacks import DRIVE, RESOURCE, Stack, subscribed

LONG_AGO = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def synchronizer(stack: Stack, sources: Any = None, **options: Any) -> Synchronizer:
    """Another synchronizer over the stack's storage, as another instance would build it."""
    parts = stack.worker.reconciler._sync
    return Synchronizer(
        parts._cursors,
        parts._index,
        sources or parts._sources,
        parts._changes,
        parts._continuations,
        parts._source_state,
        **options,
    )


def by_type(stack: Stack, item_id: str) -> list[str]:
    return [e["changeType"] for e in stack.for_item(item_id)]


@pytest.mark.timeout(300)  # tracemalloc slows every allocation several times over
async def test_a_full_sync_runs_page_by_page_across_invocations_with_bounded_memory(stack_factory):
    stack = await stack_factory("--page-size", "50", env={"INITIAL_SYNC": "full"})
    generated = await stack.control.generate_items(DRIVE, 800, folders=3)
    stack.worker.reconciler._sync._budget = 0.0  # spend the budget after every page: hand on each time
    peaks: list[int] = []
    handle = stack.worker.processor.handle

    async def measured(*args: Any) -> Any:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            return await handle(*args)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1] - before)

    stack.worker.processor.handle = measured  # type: ignore[method-assign]
    tracemalloc.start()
    try:
        await stack.reconcile()
        expected = generated["count"] + generated["folders"] + 1  # files, folders and the root
        await stack.pump(lambda: len(stack.events) >= expected, within=120)
    finally:
        tracemalloc.stop()

    per_item = Counter(e["itemId"] for e in stack.events)
    assert len(per_item) == expected and set(per_item.values()) == {1}, "every item exactly one event"
    assert {e["changeType"] for e in stack.events} == {"created"}
    assert len(peaks) >= 16, "17 pages of 50: the pass must have been handed on between invocations"
    # Each invocation holds one page, whatever the drive's size: the last pages cost what the first did.
    assert max(peaks) < 16 * 1024 * 1024, max(peaks)
    assert max(peaks[-6:]) < 2 * max(peaks[:6]) + 1024 * 1024


class Crashing:
    """A drive source that fails after a number of pages, as a crashed or killed run would stop."""

    kind = "driveItem"
    traits = PLAIN

    def __init__(self, inner: Any, pages: int) -> None:
        self.inner, self.left = inner, pages

    def handles(self, resource: str) -> bool:
        return bool(self.inner.handles(resource))

    async def page(self, resource: str, link: str | None, state: Any = None) -> Any:
        if self.left == 0:
            raise RuntimeError("the instance died")
        self.left -= 1
        return await self.inner.page(resource, link, state)


async def test_a_run_that_dies_mid_enumeration_resumes_from_its_last_saved_page(stack_factory):
    stack = await stack_factory("--page-size", "50", env={"INITIAL_SYNC": "full"})
    await stack.control.generate_items(DRIVE, 500, folders=0)
    await stack.control.delivery(paused=True)
    await stack.reconcile()
    record = await stack.record()
    real = stack.worker.reconciler._sync._sources.for_resource(RESOURCE)
    dying = synchronizer(stack, SourceRegistry([Crashing(real, pages=4)]))

    with pytest.raises(RuntimeError):
        await dying.sync(record, utcnow())
    cursor = await stack.worker.reconciler._sync._cursors.load(resource_key(RESOURCE))
    requests_before = (await stack.control.stats())["drives"][DRIVE]["deltaRequests"]
    await stack.pump(lambda: len(stack.events) >= 501, within=60)

    assert cursor.state.pages == 4 and cursor.state.next_link, "progress saved after every page"
    stats = (await stack.control.stats())["drives"][DRIVE]
    # 11 pages in all, 4 read before the crash; then at most one incremental page, since the
    # pass began within the coverage margin of the creation's sync request.
    assert 11 - 4 <= stats["deltaRequests"] - requests_before <= 11 - 4 + 1, "resumed, not enumerated again"
    assert Counter(Counter(e["itemId"] for e in stack.events).values()) == {1: 501}


async def test_a_killed_run_blocks_its_drive_only_until_its_lease_expires(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.delivery(paused=True)
    item = await stack.control.create_item(DRIVE, "after-the-kill.txt")
    record = await stack.record()
    lease = timedelta(seconds=2)
    cursors = stack.worker.reconciler._sync._cursors
    cursor = await cursors.load(resource_key(RESOURCE))
    # A killed instance leaves its lease behind: nothing releases it.
    await cursors.write(cursor, cursor.state.__class__(**{**cursor.state.__dict__, "lease_until": utcnow() + lease}))
    survivor = synchronizer(stack, lease=lease)

    blocked = await survivor.sync(record, utcnow(), deferrals=5)
    await stack.request_sync(record)
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1, within=20)

    assert blocked.decision.action is Action.DEFER
    assert by_type(stack, item["id"]) == ["created"]


async def test_delete_restore_delete_gives_two_deletions_with_different_ids(stack_factory):
    stack = await subscribed(stack_factory)
    item = await stack.control.create_item(DRIVE, "phoenix.txt", "v1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    await stack.control.delete_item(DRIVE, item["id"])
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 2)
    await stack.control.restore_item(DRIVE, item["id"])
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 3)
    await stack.control.delete_item(DRIVE, item["id"])
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 4)

    events = stack.for_item(item["id"])
    assert [e["changeType"] for e in events] == ["created", "deleted", "created", "deleted"]
    assert len({e["id"] for e in events}) == 4, "a consumer deduplicating by id must see both deletions"


async def test_a_file_moved_in_with_its_original_created_date_is_created(stack_factory):
    stack = await stack_factory()
    old = await stack.control.create_item(DRIVE, "existed-before.txt", "old", created=LONG_AGO, modified=LONG_AGO)
    await stack.reconcile()
    await stack.pump(lambda: True)  # the silent first pass: it indexes what exists

    migrated = await stack.control.create_item(DRIVE, "migrated.txt", "x", created=LONG_AGO, modified=LONG_AGO)
    await stack.control.update_item(DRIVE, old["id"], "changed")
    await stack.pump(lambda: bool(stack.for_item(migrated["id"])) and bool(stack.for_item(old["id"])))

    assert by_type(stack, migrated["id"]) == ["created"]
    assert by_type(stack, old["id"]) == ["updated"]


async def test_a_410_resync_reports_only_what_changed_and_every_deletion(stack_factory):
    stack = await stack_factory("--page-size", "100")
    # Made ten minutes before subscribing: well outside the one-minute allowance for clock skew.
    await stack.control.advance_clock(-600)
    generated = await stack.control.generate_items(DRIVE, 400, folders=2)
    await stack.control.advance_clock(600)
    await stack.reconcile()
    await stack.pump(lambda: True)
    [drive] = (await stack.control.call("GET", "/drives"))["value"]
    # Silent but for what changed within the skew allowance of subscribing: the root, made moments ago.
    assert [e["itemId"] for e in stack.events] == [drive["rootId"]]
    stack.events.clear()
    [kept, changed, doomed] = generated["sampleIds"][:3]
    await stack.control.delivery(paused=True)
    await stack.control.update_item(DRIVE, changed, "new content")
    await stack.control.delete_item(DRIVE, doomed)
    added = await stack.control.create_item(DRIVE, "new.txt")

    await stack.control.expire_tokens(DRIVE)
    await stack.request_sync(await stack.record())
    await stack.pump(lambda: len(stack.events) >= 3)
    await stack.pump(lambda: True, within=3)

    # Before the fix, every one of the 400 items the index had not seen came back as "updated".
    assert sorted((e["itemId"], e["changeType"]) for e in stack.events) == sorted(
        [(changed, "updated"), (doomed, "deleted"), (added["id"], "created")]
    )
    assert all(e["resync"] for e in stack.events)
    assert stack.for_item(kept) == []


async def test_a_message_failing_on_its_last_attempt_is_poisoned_with_no_expiry(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.fault("/delta", 400, count=100)  # a Graph error no retry fixes
    await stack.control.create_item(DRIVE, "unreadable.txt")
    record = await stack.record()
    await asyncio.sleep(1.1)  # past the coalescing interval of the run after subscribing
    body = Envelope("notifications", utcnow(), [{"subscriptionId": record.subscription_id}]).to_json()

    with pytest.raises(Exception, match="400"):
        await stack.worker.processor.handle(body, None, 4)
    summary = await stack.worker.processor.handle(body, None, 5)

    assert summary.poisoned == 1
    async with queue_client(stack.connection, f"{NOTIFICATIONS_QUEUE}-poison") as poison:
        [message] = [m async for m in poison.receive_messages()]
    assert message.content == body
    assert message.expires_on is None or message.expires_on.year >= 9999


async def test_change_events_never_expire(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.delivery(paused=True)
    await stack.control.create_item(DRIVE, "forever.txt")
    await asyncio.sleep(1.1)  # past the coalescing interval of the run after subscribing
    outcome = await stack.worker.reconciler._sync.sync(await stack.record(), utcnow())

    async with queue_client(stack.connection, CHANGES_QUEUE) as changes:
        [message] = await changes.peek_messages(max_messages=32)
    assert outcome.events == 1
    # Storage's default is 7 days: a consumer down for a week would lose events.
    assert message.expires_on is None or message.expires_on.year >= 9999, message.expires_on


@pytest.mark.parametrize("skew", [timedelta(seconds=30), timedelta(seconds=-30)], ids=["ahead", "behind"])
async def test_a_worker_whose_clock_is_off_never_skips_a_change(stack_factory, skew):
    # Before the fix, a worker 30 s ahead stamped its pass "later" than the next change's
    # notification, which was then skipped as covered: the change never arrived.
    stack = await subscribed(stack_factory)
    skewed = synchronizer(stack, clock=lambda: utcnow() + skew)
    stack.worker.processor._sync = skewed
    first = await stack.control.create_item(DRIVE, "first.txt")
    await stack.pump(lambda: len(stack.for_item(first["id"])) == 1)
    second = await stack.control.create_item(DRIVE, "second.txt")
    await stack.pump(lambda: len(stack.for_item(second["id"])) == 1, within=20)

    assert by_type(stack, first["id"]) == by_type(stack, second["id"]) == ["created"]


class RacedCursors:
    """The cursor store, as seen by an instance that loses every lease race to others."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.races = inner, 0

    async def load(self, key: str) -> Any:
        return await self.inner.load(key)

    async def write(self, cursor: Any, state: Any) -> Any:
        from shared.errors import CursorConflictError

        self.races += 1
        raise CursorConflictError("another instance moved first")


async def test_a_notification_whose_every_lease_race_is_lost_is_deferred_not_acked(stack_factory):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    await stack.control.delivery(paused=True)  # only the deferred notification can bring the change
    made = await stack.control.create_item(DRIVE, "late.txt")
    sync = stack.worker.reconciler._sync
    sync._cursors = raced = RacedCursors(sync._cursors)

    summary = await stack.worker.processor.handle(
        Envelope(
            "notifications", utcnow(), [{"subscriptionId": record.subscription_id, "changeType": "updated"}]
        ).to_json()
    )

    assert raced.races >= 3, "every lease race was lost"
    assert (summary.runs, summary.deferred) == (0, 1), "no pass ran: the notification is kept for later"
    sync._cursors = raced.inner
    await stack.pump(lambda: [e["changeType"] for e in stack.for_item(made["id"])] == ["created"], within=40)


class Held:
    """A drive source whose first page waits until released: a pass that holds the lease meanwhile."""

    kind = "driveItem"
    traits = PLAIN

    def __init__(self, inner: Any) -> None:
        self.inner, self.entered, self.release = inner, asyncio.Event(), asyncio.Event()

    def handles(self, resource: str) -> bool:
        return bool(self.inner.handles(resource))

    async def page(self, resource: str, link: str | None, state: Any = None) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self.inner.page(resource, link, state)


async def test_a_deferred_notification_is_covered_by_the_pass_that_made_it_wait(stack_factory):
    # Before the fix, the deferred copy was judged by its own insertion time, after the start of the
    # pass it waited for: that pass never covered it, so each deferral cost one more pass, and in a
    # burst the copies that lost the next lease race were deferred again (python -m bench --only
    # coalescing: 8 delta runs and 49 deferrals for 10 notification messages, 145 s to settle).
    stack = await subscribed(stack_factory)
    await stack.control.delivery(paused=True)  # the test plays the notification itself
    made = await stack.control.create_item(DRIVE, "burst.txt")
    record = await stack.record()
    notified_at = utcnow()  # as storage stamped the notification's message
    await asyncio.sleep(2.5)  # the pass below starts more than COVERAGE_MARGIN after it
    held = Held(stack.worker.reconciler._sync._sources.for_resource(RESOURCE))
    running = asyncio.create_task(synchronizer(stack, SourceRegistry([held])).sync(record, utcnow()))
    await asyncio.wait_for(held.entered.wait(), 10)
    body = Envelope("notifications", notified_at, [{"subscriptionId": record.subscription_id, "changeType": "updated"}])

    waited = await stack.worker.processor.handle(body.to_json(), notified_at)
    held.release.set()
    ran = await running
    requests = (await stack.control.stats())["drives"][DRIVE]["deltaRequests"]
    async with queue_client(stack.connection, NOTIFICATIONS_QUEUE) as client:
        copies: list[Any] = []
        for _ in range(100):  # the copy becomes visible after its delay (whole seconds)
            copies = [m async for m in client.receive_messages(max_messages=32)]
            if copies:
                break
            await asyncio.sleep(0.1)
    [copy] = copies
    again = await stack.worker.processor.handle(copy.content, copy.inserted_on, copy.dequeue_count)

    assert waited.deferred == 1 and ran.decision.action is Action.RUN and ran.events == 1
    assert copy.inserted_on > notified_at + timedelta(seconds=2), "the copy was stored after the pass began"
    assert (again.skipped, again.runs, again.deferred) == (1, 0, 0), "covered by the pass it waited for"
    assert (await stack.control.stats())["drives"][DRIVE]["deltaRequests"] == requests, "no pass of its own"
    stack.events += await receive_json(stack.connection, CHANGES_QUEUE)
    assert by_type(stack, made["id"]) == ["created"]
