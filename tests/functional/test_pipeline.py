"""The pipeline in process against a real Azurite and the Graph simulator.

A small aiohttp receiver serves the HTTP path (shared.ingest) so the simulator's
handshakes and deliveries run over real HTTP; a pump plays the Functions host's
part for the queue trigger. The end-to-end tests run the real local host instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from devtools.azurite import Azurite, free_port
from devtools.launch import Simulator, start_simulator
from devtools.messages import receive_json
from devtools.simclient import SimControl
from shared.clock import utcnow
from shared.ingest import answer_handshake
from shared.services import Receivers, Worker, build_ingest, build_worker
from shared.settings import CHANGES_QUEUE, NOTIFICATIONS_QUEUE, resource_key
from shared.storage import queue_client

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = __import__("json").loads((ROOT / "schemas" / "change-event.schema.json").read_text())
DRIVE = "b!pipeline-drive"
RESOURCE = f"drives/{DRIVE}/root"


@dataclass
class Stack:
    """Azurite, the simulator, a receiver and a worker, wired like the function app."""

    azurite: Azurite
    sim: Simulator
    control: SimControl
    worker: Worker
    env: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    others: list[Worker] = field(default_factory=list)

    def cleanup_later(self, worker: Worker) -> None:
        self.others.append(worker)

    async def close(self) -> None:
        for worker in [self.worker, *self.others]:
            await worker.close()

    @property
    def connection(self) -> str:
        return self.azurite.connection_string

    async def reconcile(self, now_offset: timedelta = timedelta(0)) -> Any:
        return await self.worker.renewer.reconcile(self.worker.settings.subscriptions, utcnow() + now_offset)

    async def pump(self, until: Callable[[], bool], within: float = 20.0) -> None:
        """Process notification messages like the host would, collecting events, until ``until()``."""
        client = queue_client(self.connection, NOTIFICATIONS_QUEUE)
        deadline = time.monotonic() + within
        async with client:
            while time.monotonic() < deadline:
                messages = [m async for m in client.receive_messages(max_messages=16, visibility_timeout=30)]
                for message in messages:
                    await self.worker.processor.handle(message.content)
                    await client.delete_message(message)
                self.events += await receive_json(self.connection, CHANGES_QUEUE)
                if until():
                    return
                if not messages:
                    await asyncio.sleep(0.1)
        raise TimeoutError(f"condition not met in {within} s; events so far: {len(self.events)}")

    def for_item(self, item_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["itemId"] == item_id]

    async def subscription(self) -> dict[str, Any]:
        [sub] = [s for s in await self.control.subscriptions() if s["resource"].strip("/") == RESOURCE]
        return sub


async def _receiver(env: dict[str, str], port: int) -> tuple[web.AppRunner, Receivers]:
    receivers = await build_ingest(env)

    async def handle(request: web.Request) -> web.Response:
        reply = answer_handshake(dict(request.query))
        if reply is None:
            lifecycle = request.path.endswith("/lifecycle")
            ingest = receivers.lifecycle if lifecycle else receivers.notifications
            reply = await ingest.accept(await request.read(), lifecycle=lifecycle)
        return web.Response(status=reply.status, text=reply.body, content_type=reply.mimetype)

    app = web.Application()
    app.router.add_post("/api/notifications", handle)
    app.router.add_post("/api/lifecycle", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, receivers


@pytest.fixture
async def stack_factory(azurite_factory, tmp_path) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    cleanup: list[Callable[[], Awaitable[Any]]] = []

    async def make(*sim_options: str, subscriptions: str | None = None) -> Stack:
        azurite = azurite_factory()
        sim = start_simulator(tmp_path / f"sim{len(cleanup)}", "--retry-base-seconds", "0.2", *sim_options)
        cleanup.append(lambda: asyncio.to_thread(sim.stop))
        control = await SimControl(sim.control_url).__aenter__()
        cleanup.append(lambda: control.__aexit__(None, None, None))
        await control.create_drive(DRIVE)
        port = free_port()
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "NOTIFICATION_URL": f"http://127.0.0.1:{port}/api/notifications",
            "LIFECYCLE_NOTIFICATION_URL": f"http://127.0.0.1:{port}/api/lifecycle",
            "GRAPH_SUBSCRIPTIONS": subscriptions or f'[{{"resource": "{RESOURCE}", "changeType": "updated"}}]',
            **sim.settings(),
        }
        runner, receivers = await _receiver(env, port)
        cleanup.append(runner.cleanup)
        cleanup.append(receivers.close)
        stack = Stack(azurite, sim, control, await build_worker(env), env)
        cleanup.append(stack.close)
        return stack

    yield make
    for step in reversed(cleanup):
        await step()


async def subscribed(stack_factory, *options: str) -> Stack:
    stack = await stack_factory(*options)
    report = await stack.reconcile()
    assert report.created == 1 and report.failed == 0
    await stack.pump(lambda: True)  # the sync requested at creation: nothing changed yet
    return stack


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


async def test_replaying_notifications_from_an_old_cursor_repeats_the_same_ids(stack_factory):
    stack = await subscribed(stack_factory)
    cursors = stack.worker.renewer._sync._cursors  # the run's own store, as another instance would see it
    before = await cursors.load(resource_key(RESOURCE))
    item = await stack.control.create_item(DRIVE, "a.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    first = stack.for_item(item["id"])[0]["id"]

    # As if the run had crashed after writing its events but before saving its cursor.
    current = await cursors.load(resource_key(RESOURCE))
    await cursors.write(current, before.state)
    await stack.worker.renewer._request_sync(await _record(stack))
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 2)
    again = stack.for_item(item["id"])[1]
    assert again["id"] == first


async def _record(stack: Stack) -> Any:
    [record] = await stack.worker.renewer._store.list()
    return record


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
    assert await stack.worker.renewer._store.list() == []


async def test_conflicting_subscription_at_graph_is_replaced(stack_factory):
    stack = await stack_factory()
    # A subscription for the same combination that this app's table does not know (e.g. a crash).
    first = await stack.reconcile()
    assert first.created == 1
    [record] = await stack.worker.renewer._store.list()
    await stack.worker.renewer._store.delete(record.key)
    report = await stack.reconcile()
    assert report.created == 1 and report.failed == 0
    [sub] = await stack.control.subscriptions()
    [record] = await stack.worker.renewer._store.list()
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


async def test_two_instances_on_one_notification_run_delta_once(stack_factory):
    stack = await subscribed(stack_factory)
    second = await build_worker(stack.env)  # another instance: its own clients, same storage
    stack.cleanup_later(second)
    await stack.control.delivery(paused=True)
    await stack.control.create_item(DRIVE, "race.txt")
    await stack.control.reset_stats()
    record = await _record(stack)
    await asyncio.sleep(1.1)  # past the coalescing interval of the run that followed subscribing
    received = utcnow()
    outcomes = await asyncio.gather(
        stack.worker.renewer._sync.sync(record, received), second.renewer._sync.sync(record, received)
    )
    actions = sorted(o.decision.action.value for o in outcomes)
    assert actions.count("run") == 1, actions
    stats = await stack.control.stats()
    assert stats["drives"][DRIVE]["deltaRuns"] == 1


class SteppedClock:
    """A clock that moves only when told to, so a test can make a run look long."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now


class Interleaved:
    """A drive source that lets another instance try its luck between the pages of a run."""

    kind = "driveItem"

    def __init__(self, inner: Any, clock: SteppedClock, competitor: Callable[[], Awaitable[Any]]) -> None:
        self.inner, self.clock, self.competitor = inner, clock, competitor
        self.decisions: list[str] = []

    def handles(self, resource: str) -> bool:
        return self.inner.handles(resource)

    async def latest(self, resource: str) -> str:
        return await self.inner.latest(resource)

    async def read(self, resource: str, delta_link: str | None, keep_alive: Any = None) -> Any:
        async def between_pages() -> None:
            self.clock.now += timedelta(seconds=40)  # each page seems to take 40 s
            await keep_alive()
            outcome = await self.competitor()
            self.decisions.append(outcome.decision.action.value)

        return await self.inner.read(resource, delta_link, between_pages)


async def test_a_long_run_keeps_its_lease_so_no_other_instance_runs_meanwhile(stack_factory):
    from shared.sources import SourceRegistry
    from shared.synchronizer import LEASE, Synchronizer

    stack = await subscribed(stack_factory, "--page-size", "2")
    await stack.control.delivery(paused=True)  # only this test's runs read the drive
    for n in range(6):
        await stack.control.create_item(DRIVE, f"page-{n}.txt")
    parts = stack.worker.renewer._sync
    record = await _record(stack)
    clock = SteppedClock()
    clock.now += timedelta(seconds=5)  # past the coalescing interval of the run after subscribing
    competitor = Synchronizer(parts._cursors, parts._index, parts._sources, parts._changes, clock=clock)
    received = clock.now
    source = Interleaved(parts._sources.for_resource(RESOURCE), clock, lambda: competitor.sync(record, received))
    runner = Synchronizer(parts._cursors, parts._index, SourceRegistry([source]), parts._changes, clock=clock)

    outcome = await runner.sync(record, received)

    assert outcome.decision.action.value == "run"
    assert len(source.decisions) >= 3, "the delta should span several pages"
    assert clock.now - received > LEASE  # longer than one lease: only extensions kept it
    assert set(source.decisions) == {"defer"}
    cursor = await parts._cursors.load(resource_key(RESOURCE))
    assert cursor.state.lease_until is None and cursor.state.synced_from == received


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
