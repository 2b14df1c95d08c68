"""Subscriptions at scale and under failure, against a real Azurite and the Graph simulator.

These tests look at the subscription table, Graph's side and the notifications
queue; the stack's pump plays the queue trigger where a change must arrive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.app.worker import build_worker
from shared.clock import utcnow
from shared.errors import SubscriptionPendingError
from shared.model.resources import resource_key
from shared.model.subscription import ACTIVE, FAILED, SubscriptionRecord
from shared.stores.clients import table_client
from shared.stores.subscriptions import SubscriptionStore
from tests.functional.stacks import subscribed

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def drive_resource(drive: str) -> str:
    return f"drives/{drive}/root"


# --- the store: point reads by subscription id ------------------------------------------------------


@pytest.fixture
async def store(azurite, unique_name) -> AsyncIterator[SubscriptionStore]:
    async with table_client(azurite.connection_string, unique_name("subs")) as client:
        subscriptions = SubscriptionStore(client)
        await subscriptions.setup()
        yield subscriptions


def record(key: str = "drives:d1:root|updated", subscription_id: str = "sub-1", secret: str = "s1") -> Any:
    return SubscriptionRecord(key, "drives/d1/root", "updated", secret, ACTIVE, NOW, subscription_id, NOW)


async def test_a_subscription_and_its_secret_are_found_by_id(store):
    await store.save(record())
    await store.save(record(key="drives:d2:root|updated", subscription_id="sub-2", secret="s2"))

    assert await store.secret("sub-1") == "s1"
    assert await store.secret("sub-2") == "s2"
    assert (await store.find("sub-2")).key == "drives:d2:root|updated"
    assert await store.find("sub-1") == record()


@pytest.mark.parametrize("unknown", ["sub-9", "", "a/b", "x#y", "q?z", "\x00"])
async def test_an_unknown_or_unusable_id_finds_nothing(store, unknown):
    await store.save(record())

    assert await store.secret(unknown) is None
    assert await store.find(unknown) is None


async def test_a_secret_is_none_before_the_table_exists(azurite, unique_name):
    async with table_client(azurite.connection_string, unique_name("nosubs")) as client:
        assert await SubscriptionStore(client).secret("sub-1") is None


async def test_an_id_the_record_moved_away_from_is_no_longer_found(store):
    await store.save(record())
    await store.save(record(subscription_id="sub-2", secret="s2"))  # as if a crash kept the old id row

    assert await store.find("sub-1") is None
    assert (await store.find("sub-2")).client_state == "s2"
    await store.retire("sub-1")
    assert await store.secret("sub-1") is None


async def test_deleting_a_record_forgets_its_id(store):
    await store.save(record())

    await store.delete(record().key, "sub-1")

    assert await store.find("sub-1") is None
    assert await store.secret("sub-1") is None
    assert await store.list() == []


async def test_records_saved_before_id_rows_existed_are_found_after_a_backfill(store):
    legacy = {
        "PartitionKey": "subscription",
        "RowKey": "drives:d1:root|updated",
        "Resource": "drives/d1/root",
        "ChangeType": "updated",
        "ClientState": "s1",
        "Status": ACTIVE,
        "UpdatedAt": NOW,
        "SubscriptionId": "sub-1",
        "ExpiresAt": NOW,
    }
    await store._client.create_entity(legacy)
    assert await store.find("sub-1") is None

    assert await store.backfill() == 1

    assert await store.find("sub-1") == record()
    assert await store.secret("sub-1") == "s1"
    assert await store.backfill() == 0


# --- re-creation never strands a subscription -------------------------------------------------------


async def test_a_failed_recreation_keeps_the_old_id_findable_and_the_next_tick_repairs_it(stack_factory):
    stack = await subscribed(stack_factory, drives=["b!strand"])
    [old] = await stack.control.subscriptions()
    await stack.control.drop_subscription(old["id"])
    # Graph refuses the new subscription once (e.g. its validation handshake failed).
    await stack.control.fault("/subscriptions$", 400, count=1, method="POST")

    failed = await stack.reconcile()

    assert (failed.recreated, failed.failed) == (0, 1)
    kept = await stack.store.find(old["id"])
    assert kept is not None and kept.status == FAILED
    assert await stack.store.secret(old["id"]) == old["clientState"]

    repaired = await stack.reconcile()  # the very next tick, not ten minutes later

    assert (repaired.recreated, repaired.failed) == (1, 0)
    [new] = await stack.control.subscriptions()
    active = await stack.store.find(new["id"])
    assert active is not None and active.status == ACTIVE and active.client_state == new["clientState"]
    assert await stack.store.secret(new["id"]) == new["clientState"]
    assert await stack.store.find(old["id"]) is None
    assert await stack.store.secret(old["id"]) is None


async def test_a_change_made_during_a_failed_recreation_still_arrives(stack_factory):
    stack = await subscribed(stack_factory, drives=["b!gap"])
    [old] = await stack.control.subscriptions()
    await stack.control.drop_subscription(old["id"])
    await stack.control.fault("/subscriptions$", 400, count=1, method="POST")
    await stack.reconcile()
    item = await stack.control.create_item("b!gap", "in-the-gap.txt")

    await stack.reconcile()

    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    assert stack.for_item(item["id"])[0]["changeType"] == "created"


# --- removal costs O(N) -----------------------------------------------------------------------------


async def test_removing_subscriptions_reads_the_table_once_and_keeps_the_cursor_still_desired(stack_factory):
    drives = [f"b!rm{n}" for n in range(4)]
    stack = await subscribed(stack_factory, drives=drives)
    keep_one = json.dumps([{"resource": drive_resource(drives[0])}])
    worker = await build_worker({**stack.env, "GRAPH_SUBSCRIPTIONS": keep_one})
    try:
        store = worker.reconciler._store
        reads = 0
        listing = store.list

        async def counted() -> list[SubscriptionRecord]:
            nonlocal reads
            reads += 1
            return await listing()

        store.list = counted  # type: ignore[method-assign]

        report = await worker.reconciler.reconcile(worker.settings.subscriptions)

        assert (report.deleted, report.failed) == (3, 0)
        assert reads == 1
        assert [s["resource"].strip("/") for s in await stack.control.subscriptions()] == [drive_resource(drives[0])]
        cursors = worker.reconciler._sync._cursors
        assert (await cursors.load(resource_key(drive_resource(drives[0])))).exists
        for drive in drives[1:]:
            assert not (await cursors.load(resource_key(drive_resource(drive)))).exists
    finally:
        await worker.close()


# --- the safety sweep -------------------------------------------------------------------------------


async def test_a_change_graph_never_notified_arrives_after_a_sweep(stack_factory):
    stack = await subscribed(stack_factory, drives=["b!quiet"], env={"SWEEP_AFTER_SECONDS": "0"})
    await stack.control.delivery(drop=True)  # Graph drops the notification: nothing reaches the app
    item = await stack.control.create_item("b!quiet", "never-notified.txt")
    await asyncio.sleep(0.3)  # let the simulator process (and drop) the notification
    await stack.pump(lambda: True, within=2)
    assert stack.for_item(item["id"]) == []

    report = await stack.worker.sweeper.sweep()

    assert (report.due, report.messages) == (1, 1)
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    assert stack.for_item(item["id"])[0]["changeType"] == "created"


async def test_a_sweep_leaves_subscriptions_with_a_recent_run_alone(stack_factory):
    stack = await subscribed(stack_factory, drives=["b!busy1", "b!busy2"])  # default: 900 s

    report = await stack.worker.sweeper.sweep()

    assert (report.checked, report.due, report.messages) == (2, 0, 0)


# --- Graph gives a duplicate its own id: the reconciler converges without a 409 ---------------------


class Killed(BaseException):
    """The instance dies here: no handler of the app's runs (they catch Exception)."""


async def _ours(stack: Any, resource: str) -> list[dict[str, Any]]:
    return [s for s in await stack.control.subscriptions() if s["resource"].strip("/") == resource]


async def _converged(stack: Any, resource: str) -> dict[str, Any]:
    """Graph holds one subscription on ``resource``; the record names it and the HTTP path knows it."""
    [live] = await _ours(stack, resource)
    [stored] = await stack.store.list()
    assert (stored.status, stored.subscription_id, stored.client_state) == (ACTIVE, live["id"], live["clientState"])
    assert await stack.store.secret(live["id"]) == live["clientState"]
    assert await stack.store.pending.all() == []
    return live


async def test_a_subscription_is_replaced_by_creating_the_new_one_before_deleting_the_old(stack_factory):
    stack = await subscribed(stack_factory, drives=["b!swap"])
    [old] = await stack.control.subscriptions()
    record = await stack.record()
    # An earlier re-creation failed while the old subscription still lives: the next tick re-creates it.
    await stack.store.save(replace(record, status=FAILED))
    graph = stack.worker.reconciler._graph
    delete = graph.delete_subscription
    live_at_delete: list[set[str]] = []

    async def watched(subscription_id: str) -> None:
        live_at_delete.append({s["id"] for s in await _ours(stack, drive_resource("b!swap"))})
        await delete(subscription_id)

    graph.delete_subscription = watched

    report = await stack.reconcile()

    assert (report.recreated, report.failed) == (1, 0)
    new = await _converged(stack, drive_resource("b!swap"))
    # Both lived when the old one went: a change at any moment reached one of them.
    assert live_at_delete == [{old["id"], new["id"]}]
    assert await stack.store.secret(old["id"]) is None


async def test_two_instances_creating_at_once_converge_to_one_subscription(stack_factory):
    stack = await stack_factory(drives=["b!twice"])
    other = await build_worker(stack.env)
    stack.cleanup_later(other)

    # Both plan a creation before either records it (the timer of one, an operator's CLI on another).
    both_planned = asyncio.Barrier(2)
    for reconciler in (stack.worker.reconciler, other.reconciler):
        create = reconciler.create

        async def create_after_both(want: Any, now: datetime, create: Any = create) -> Any:
            await both_planned.wait()
            return await create(want, now)

        reconciler.create = create_after_both

    await asyncio.gather(stack.reconcile(), other.reconciler.reconcile(other.settings.subscriptions))
    created = await _ours(stack, drive_resource("b!twice"))
    assert len(created) == 2  # Graph answered both: no 409 stopped the second

    report = await stack.reconcile()  # the next tick lists Graph and deletes the one no record names

    assert report.failed == 0
    live = await _converged(stack, drive_resource("b!twice"))
    [gone] = [s for s in created if s["id"] != live["id"]]
    assert await stack.store.secret(gone["id"]) is None  # its id row went with it
    assert await stack.store.find(gone["id"]) is None


CRASH_POINTS = ["after-graph-answered", "after-the-id-was-recorded", "between-id-row-and-record", "before-settling"]


@pytest.mark.parametrize("crash", CRASH_POINTS)
async def test_a_crash_during_creation_converges_to_one_subscription_the_app_knows(stack_factory, crash):
    stack = await stack_factory(drives=["b!crash"])
    reconciler = stack.worker.reconciler
    store, graph = reconciler._store, reconciler._graph
    create, record_pending, upsert = graph.create_subscription, store.pending.record, store._client.upsert_entity

    async def created(*args: Any, **kwargs: Any) -> Any:
        await create(*args, **kwargs)
        raise Killed

    async def recorded(pending: Any) -> Any:
        written = await record_pending(pending)
        if pending.subscription_id:
            raise Killed
        return written

    async def upserted(entity: Any, **kwargs: Any) -> Any:
        if entity["PartitionKey"] == "subscription" and entity["Status"] == ACTIVE:
            raise Killed  # the id row is written, the record not yet
        return await upsert(entity, **kwargs)

    async def settling(key: str) -> None:
        raise Killed

    hooks = {
        "after-graph-answered": (graph, "create_subscription", created),
        "after-the-id-was-recorded": (store.pending, "record", recorded),
        "between-id-row-and-record": (store._client, "upsert_entity", upserted),
        "before-settling": (store.pending, "settle", settling),
    }
    target, name, hook = hooks[crash]
    setattr(target, name, hook)
    with pytest.raises(Killed):
        await stack.reconcile()
    [made] = await _ours(stack, drive_resource("b!crash"))
    # Meanwhile Graph notifies the subscription it made: the HTTP path must not call it unknown (202),
    # and the queue trigger must find the record it belongs to.
    if crash == "after-graph-answered":
        with pytest.raises(SubscriptionPendingError):  # answered 503: Graph retries
            await stack.store.secret(made["id"])
    else:
        assert await stack.store.secret(made["id"]) == made["clientState"]
        found = await stack.store.find(made["id"])
        assert found is not None and (found.subscription_id, found.client_state) == (made["id"], made["clientState"])

    restarted = await build_worker(stack.env)  # a new instance, after the creating record went stale
    stack.cleanup_later(restarted)
    report = await restarted.reconciler.reconcile(restarted.settings.subscriptions, utcnow() + timedelta(minutes=3))

    assert report.failed == 0
    live = await _converged(stack, drive_resource("b!crash"))
    if crash != "after-graph-answered":
        assert live["id"] == made["id"]  # adopted: Graph's answer was recorded before the crash
