"""The pipeline in process against a real Azurite and the Graph simulator: drive changes to events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.app.worker import build_worker
from shared.clock import utcnow
from shared.model.changes import PLAIN
from shared.model.names import CHANGES_QUEUE
from shared.model.resources import resource_key
from shared.stores.clients import queue_client
from tests.functional.stacks import DRIVE, RESOURCE, Stack, subscribed

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = __import__("json").loads((ROOT / "schemas" / "change-event.schema.json").read_text())


async def test_created_renamed_deleted_file_gives_three_events_with_stable_ids(stack_factory):
    stack = await subscribed(stack_factory)
    item = await stack.control.create_item(DRIVE, "report.docx", "v1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    await stack.control.rename_item(DRIVE, item["id"], "report-final.docx")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 2)
    await stack.control.delete_item(DRIVE, item["id"])
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 3)

    events = stack.for_item(item["id"])
    assert [e["changeType"] for e in events] == ["created", "updated", "deleted"]
    assert events[0]["item"]["name"] == "report.docx"
    assert events[1]["item"]["name"] == "report-final.docx"
    assert events[2]["item"] is None
    assert len({e["id"] for e in events}) == 3
    sub = await stack.subscription()
    for event in events:
        jsonschema.validate(event, SCHEMA)
        assert event["subscriptionId"] == sub["id"]
        assert event["resource"] == RESOURCE
        # The tenant the change happened in, as the settings name it (and as Graph's notification did).
        assert event["tenantId"] == stack.env["GRAPH_TENANT_ID"]


async def _rewind(stack: Stack, before: Any) -> None:
    """Put the cursor back where it was, as if the run had crashed before saving it."""
    cursors = stack.worker.reconciler._sync._cursors  # the run's own store, as another instance would see it
    current = await cursors.load(resource_key(RESOURCE))
    await cursors.write(current, before.state)
    await stack.request_sync(await _record(stack))


async def test_a_run_repeated_after_its_index_was_written_reports_nothing_new(stack_factory):
    stack = await subscribed(stack_factory)
    before = await stack.worker.reconciler._sync._cursors.load(resource_key(RESOURCE))
    item = await stack.control.create_item(DRIVE, "a.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)

    await _rewind(stack, before)
    await stack.pump(lambda: True)
    await stack.pump(lambda: True, within=3)

    # Before the fix, the repeat reported the file again as "updated" under the same id.
    assert [e["changeType"] for e in stack.for_item(item["id"])] == ["created"]


async def test_a_run_repeated_before_its_index_was_written_repeats_the_same_id_and_type(stack_factory):
    stack = await subscribed(stack_factory)
    before = await stack.worker.reconciler._sync._cursors.load(resource_key(RESOURCE))
    item = await stack.control.create_item(DRIVE, "a.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)

    # As if the run had crashed after sending its events, before writing the index and the cursor.
    await stack.worker.reconciler._sync._index.purge(resource_key(RESOURCE), [item["id"]])
    await _rewind(stack, before)
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 2)

    first, again = stack.for_item(item["id"])
    assert (again["id"], again["changeType"]) == (first["id"], first["changeType"]) == (first["id"], "created")


async def _record(stack: Stack) -> Any:
    return await stack.record()


async def test_duplicate_deliveries_do_not_multiply_events(stack_factory):
    stack = await subscribed(stack_factory, "--duplicates", "3")
    item = await stack.control.create_item(DRIVE, "dup.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) >= 1)
    await asyncio.sleep(1.5)  # let every duplicate arrive and be processed
    await stack.pump(lambda: True)
    await stack.pump(lambda: True, within=5)
    assert len({e["id"] for e in stack.for_item(item["id"])}) == 1


async def test_burst_of_200_notifications_costs_at_most_three_delta_runs(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.reset_stats()
    await stack.control.create_items(DRIVE, 200, prefix="burst")

    def created() -> int:
        return sum(1 for e in stack.events if e["changeType"] == "created" and e["item"]["name"].startswith("burst-"))

    await stack.pump(lambda: created() == 200, within=60)
    await stack.pump(lambda: True, within=5)
    stats = await stack.control.stats()
    delivered = stats["delivery"]["itemsDelivered"]
    runs = stats["drives"][DRIVE]["deltaRuns"]
    assert delivered >= 200
    assert runs <= 3, f"{runs} delta runs for {delivered} notifications"
    assert created() == 200


async def test_stale_cursor_410_resyncs_without_losing_a_change(stack_factory):
    stack = await subscribed(stack_factory)
    keep = await stack.control.create_item(DRIVE, "keep.txt", "1")
    gone = await stack.control.create_item(DRIVE, "gone.txt", "1")
    await stack.pump(lambda: len(stack.for_item(gone["id"])) == 1 and len(stack.for_item(keep["id"])) == 1)

    await stack.control.expire_tokens(DRIVE)
    await stack.control.delete_item(DRIVE, gone["id"])
    await stack.control.update_item(DRIVE, keep["id"], "2")
    new = await stack.control.create_item(DRIVE, "new.txt", "1")
    await stack.pump(
        lambda: (
            len(stack.for_item(new["id"])) == 1
            and len(stack.for_item(gone["id"])) == 2
            and len(stack.for_item(keep["id"])) == 2
        )
    )
    assert stack.for_item(gone["id"])[-1]["changeType"] == "deleted"
    assert stack.for_item(keep["id"])[-1]["changeType"] == "updated"
    assert stack.for_item(new["id"])[-1]["changeType"] == "created"
    assert all(e["resync"] for e in stack.events[-3:])


async def test_expiring_subscription_is_renewed(stack_factory):
    stack = await subscribed(stack_factory)
    before = await stack.subscription()
    days = 20
    await stack.control.advance_clock(days * 86400)
    report = await stack.reconcile(timedelta(days=days))
    assert report.renewed == 1 and report.failed == 0
    after = await stack.subscription()
    assert after["id"] == before["id"]
    assert after["expirationDateTime"] > before["expirationDateTime"]


async def test_fresh_subscription_is_not_renewed(stack_factory):
    stack = await subscribed(stack_factory)
    report = await stack.reconcile()
    assert (report.created, report.renewed, report.recreated, report.failed) == (0, 0, 0, 0)


async def test_subscription_deleted_at_graph_is_created_again_and_changes_flow(stack_factory):
    stack = await subscribed(stack_factory)
    old = await stack.subscription()
    await stack.control.drop_subscription(old["id"])
    report = await stack.reconcile()
    assert report.recreated == 1
    new = await stack.subscription()
    assert new["id"] != old["id"]
    assert new["clientState"] != old["clientState"]
    item = await stack.control.create_item(DRIVE, "after.txt")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    assert stack.for_item(item["id"])[0]["subscriptionId"] == new["id"]


async def test_changes_made_while_unsubscribed_arrive_after_recreation(stack_factory):
    stack = await subscribed(stack_factory)
    old = await stack.subscription()
    await stack.control.drop_subscription(old["id"])
    item = await stack.control.create_item(DRIVE, "in-the-gap.txt")  # no subscription: no notification
    await stack.reconcile()
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)


async def test_undesired_subscription_is_deleted(stack_factory):
    stack = await subscribed(stack_factory)
    stack.cleanup_later(stack.worker)
    stack.worker = await build_worker({**stack.env, "GRAPH_SUBSCRIPTIONS": "[]"})
    report = await stack.reconcile()
    assert report.deleted == 1
    assert await stack.control.subscriptions() == []
    assert await stack.worker.reconciler._store.list() == []


async def test_conflicting_subscription_at_graph_is_replaced(stack_factory):
    stack = await stack_factory()
    # A subscription for the same combination that this app's table does not know (e.g. a crash).
    first = await stack.reconcile()
    assert first.created == 1
    [record] = await stack.worker.reconciler._store.list()
    await stack.worker.reconciler._store.delete(record.key)
    report = await stack.reconcile()
    assert report.created == 1 and report.failed == 0
    [sub] = await stack.control.subscriptions()
    [record] = await stack.worker.reconciler._store.list()
    assert sub["id"] == record.subscription_id


async def test_subscription_removed_event_recreates_it(stack_factory):
    stack = await subscribed(stack_factory)
    old = await stack.subscription()
    await stack.control.lifecycle(old["id"], "subscriptionRemoved")
    new = await pump_until_subscription_changes(stack, old["id"])
    assert new["id"] != old["id"]
    item = await stack.control.create_item(DRIVE, "after-removal.txt")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)


async def test_missed_event_resyncs(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.delivery(paused=True)
    item = await stack.control.create_item(DRIVE, "missed.txt")
    sub = await stack.subscription()
    await stack.control.lifecycle(sub["id"], "missed")
    await stack.control.delivery(paused=False)
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)


async def test_throttled_delta_is_retried_after_retry_after(stack_factory):
    stack = await subscribed(stack_factory)
    await stack.control.fault("/delta", 429, count=2, retry_after=1)
    item = await stack.control.create_item(DRIVE, "throttled.txt")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1, within=30)


async def test_two_instances_on_one_notification_never_read_the_drive_at_once(stack_factory):
    stack = await subscribed(stack_factory)
    second = await build_worker(stack.env)  # another instance: its own clients, same storage
    stack.cleanup_later(second)
    await stack.control.delivery(paused=True)
    item = await stack.control.create_item(DRIVE, "race.txt")
    await stack.control.reset_stats()
    record = await _record(stack)
    await asyncio.sleep(1.1)  # past the coalescing interval of the run that followed subscribing
    received = utcnow()
    outcomes = await asyncio.gather(
        stack.worker.reconciler._sync.sync(record, received), second.reconciler._sync.sync(record, received)
    )
    await stack.pump(lambda: True)

    actions = sorted(o.decision.action.value for o in outcomes)
    # One runs; the other defers while the lease is held, and at most runs once more afterwards,
    # since the first pass started within the coverage margin of the notification.
    assert actions[0] in ("defer", "run") and "run" in actions, actions
    assert (await stack.control.stats())["drives"][DRIVE]["deltaRuns"] <= 2
    assert [e["changeType"] for e in stack.for_item(item["id"])] == ["created"]


class Interleaved:
    """A drive source that lets another instance try its luck between the pages of a run."""

    kind = "driveItem"
    traits = PLAIN

    def __init__(
        self, inner: Any, competitor: Callable[[], Awaitable[Any]], step: Callable[[], Awaitable[None]]
    ) -> None:
        self.inner, self.competitor, self.step = inner, competitor, step
        self.decisions: list[str] = []

    def handles(self, resource: str) -> bool:
        return self.inner.handles(resource)

    async def page(self, resource: str, link: str | None, state: Any = None) -> Any:
        await self.step()
        outcome = await self.competitor()
        self.decisions.append(outcome.decision.action.value)
        return await self.inner.page(resource, link, state)


def _synchronizer(parts: Any, sources: Any, **options: Any) -> Any:
    from shared.sync.synchronizer import Synchronizer

    return Synchronizer(
        parts._cursors, parts._index, sources, parts._changes, parts._continuations, parts._source_state, **options
    )


async def test_a_run_longer_than_its_lease_keeps_it_so_no_other_instance_runs_meanwhile(stack_factory):
    from shared.model.changes import SourceRegistry

    stack = await subscribed(stack_factory, "--page-size", "2")
    await stack.control.delivery(paused=True)  # only this test's runs read the drive
    for n in range(10):
        await stack.control.create_item(DRIVE, f"page-{n}.txt")
    parts = stack.worker.reconciler._sync
    record = await _record(stack)
    await asyncio.sleep(1.1)  # past the coalescing interval of the run after subscribing
    lease = timedelta(seconds=2)
    # No coalescing interval: this test is about the lease, not about bursts.
    competitor = _synchronizer(parts, parts._sources, lease=lease, min_interval=timedelta(0))
    received = utcnow()

    async def a_while() -> None:
        await asyncio.sleep(0.8)  # each page takes a while: the run outlasts its lease several times

    source = Interleaved(parts._sources.for_resource(RESOURCE), lambda: competitor.sync(record, received), a_while)
    runner = _synchronizer(parts, SourceRegistry([source]), lease=lease, min_interval=timedelta(0))
    started = time.monotonic()

    outcome = await runner.sync(record, received)

    assert outcome.decision.action.value == "run"
    assert len(source.decisions) >= 4, "the delta should span several pages"
    assert time.monotonic() - started > 2 * lease.total_seconds()  # only extensions kept the lease
    assert set(source.decisions) == {"defer"}
    cursor = await parts._cursors.load(resource_key(RESOURCE))
    assert cursor.state.lease_until is None and not cursor.state.in_progress


async def test_the_lease_is_held_through_a_step_slower_than_the_lease_itself(stack_factory):
    from shared.model.changes import SourceRegistry

    stack = await subscribed(stack_factory)
    await stack.control.delivery(paused=True)
    await stack.control.create_item(DRIVE, "slow.txt")
    parts = stack.worker.reconciler._sync
    record = await _record(stack)
    await asyncio.sleep(1.1)
    lease = timedelta(seconds=2)
    # No coalescing interval: this test is about the lease, not about bursts.
    competitor = _synchronizer(parts, parts._sources, lease=lease, min_interval=timedelta(0))

    async def three_seconds() -> None:
        await asyncio.sleep(3)  # one slow step, longer than the lease: only the heartbeat keeps it

    received = utcnow()
    source = Interleaved(
        parts._sources.for_resource(RESOURCE), lambda: competitor.sync(record, received), three_seconds
    )
    runner = _synchronizer(parts, SourceRegistry([source]), lease=lease, min_interval=timedelta(0))

    outcome = await runner.sync(record, received)

    assert outcome.decision.action.value == "run"
    # The competitor looked after the slow step, with the lease still held: it deferred.
    assert source.decisions and source.decisions[0] == "defer", source.decisions


async def pump_until_subscription_changes(stack: Stack, old_id: str, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await stack.pump(lambda: True, within=5)
        subs = await stack.control.subscriptions()
        if subs and subs[0]["id"] != old_id:
            return subs[0]
        await asyncio.sleep(0.2)
    raise TimeoutError("the subscription was not re-created")


async def test_reauthorization_required_calls_reauthorize(stack_factory):
    stack = await subscribed(stack_factory)
    sub = await stack.subscription()
    # The first reauthorize call fails once with 503 (retried): the fault counter proves the call was made.
    await stack.control.fault("/reauthorize$", 503, count=1, method="POST")
    await stack.control.lifecycle(sub["id"], "reauthorizationRequired")
    deadline = time.monotonic() + 20
    while (await stack.control.stats())["faultsInjected"] < 1 and time.monotonic() < deadline:
        await stack.pump(lambda: True, within=5)
    await stack.pump(lambda: True, within=5)
    assert (await stack.control.stats())["faultsInjected"] == 1
    assert (await stack.subscription())["id"] == sub["id"]


async def test_reauthorization_for_a_subscription_graph_lost_recreates_it(stack_factory):
    stack = await subscribed(stack_factory)
    sub = await stack.subscription()
    await stack.control.fault("/reauthorize$", 404, count=1, method="POST")
    await stack.control.lifecycle(sub["id"], "reauthorizationRequired")
    new = await pump_until_subscription_changes(stack, sub["id"])
    assert new["clientState"] != sub["clientState"]


async def test_events_go_to_the_account_changes_storage_names_and_not_the_apps(stack_factory, azurite_factory):
    events_account = azurite_factory()
    stack = await subscribed(stack_factory, env={"CHANGES_STORAGE": events_account.connection_string})
    item = await stack.control.create_item(DRIVE, "elsewhere.txt", "1")

    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)  # read from CHANGES_STORAGE's account

    assert stack.for_item(item["id"])[0]["changeType"] == "created"
    async with queue_client(stack.connection, CHANGES_QUEUE) as client:
        with pytest.raises(ResourceNotFoundError):
            await client.get_queue_properties()  # the app's own account never got graph-changes
