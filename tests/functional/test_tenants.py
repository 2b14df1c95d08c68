"""Many tenants in one deployment (TENANT_MODE=multi), against Azurite and the simulator's tenants.

Three tenants watch a drive of the same id: each gets its own subscription, cursor and
events; an item naming another tenant is refused on the HTTP path; a tenant whose
consent is revoked is suspended while the others flow, and resumed with what it missed;
a removal cut short by a crash is finished by the next tick.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from devtools.messages import peek_count, receive_json
from devtools.simctl import TenantControl
from shared.clock import utcnow
from shared.model.names import CURSORS_TABLE, NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE
from shared.model.tenant import ACTIVE, SUSPENDED, scope_of
from shared.queues.message_queue import MessageQueue
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore
from shared.stores.tenants import TenantStore
from shared.tenants.onboarding import register_consent, schedule
from tests.functional.stacks import DRIVE, RESOURCE, Stack
from tests.functional.tenant_stacks import B, C, close_controls, rows_of, three_tenants

SINK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _records(stack: Stack) -> list[Any]:
    async with table_client(stack.connection, SUBSCRIPTIONS_TABLE) as client:
        return await SubscriptionStore(client).list()


async def _tenant(stack: Stack, tenant: str) -> Any:
    async with table_client(stack.connection, TENANTS_TABLE) as client:
        stored = await TenantStore(client).get(tenant)
        return stored.tenant if stored is not None else None


async def test_three_tenants_watching_the_same_drive_id_each_get_their_own_events(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    try:
        records = await _records(stack)
        assert sorted(scope_of(r.key) for r in records) == sorted(tenants)
        items = {t: await controls[t].create_item(DRIVE, f"report-{t[:4]}.docx", t) for t in tenants}
        await stack.pump(lambda: all(stack.for_item(items[t]["id"]) for t in tenants))
        for tenant, item in items.items():
            [event] = stack.for_item(item["id"])
            assert event["tenantId"] == tenant and event["changeType"] == "created"
            assert event["subscriptionId"] == next(r.subscription_id for r in records if r.tenant == tenant)
        async with table_client(stack.connection, CURSORS_TABLE) as cursors:
            keys = [e["RowKey"] async for e in cursors.query_entities("", select=["RowKey"])]
        assert len({scope_of(k) for k in keys}) == 3  # one cursor per tenant, though the resource is the same
        async with table_client(stack.connection, TENANTS_TABLE) as client:
            assert set(await TenantStore(client).last_passes()) == set(tenants)  # for `graphhooks tenants list`
    finally:
        await close_controls(controls)


async def test_an_item_naming_another_tenant_than_its_subscriptions_is_refused_on_the_http_path(
    stack_factory: Any,
) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    try:
        of_b = next(r for r in await _records(stack) if r.tenant == B)
        item = {
            "subscriptionId": of_b.subscription_id,
            "clientState": of_b.client_state,
            "changeType": "updated",
            "resource": RESOURCE,
            "tenantId": tenants[0],  # the home tenant's id on B's subscription
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(stack.env["NOTIFICATION_URL"], json={"value": [item]}) as answer:
                assert answer.status == 202
            async with session.post(stack.env["NOTIFICATION_URL"], json={"value": [item | {"tenantId": B}]}) as ok:
                assert ok.status == 202
        processed: list[Any] = []
        original = stack.worker.processor._subscription

        async def spy(envelope: Any, notified_at: Any, sid: str, items: list[Any]) -> Any:
            processed.extend(items)
            return await original(envelope, notified_at, sid, items)

        stack.worker.processor._subscription = spy  # type: ignore[method-assign]
        await stack.pump(lambda: bool(processed))
        # Only the item that named B was stored; the other was refused before the queue.
        assert [i["tenantId"] for i in processed] == [B]
    finally:
        await close_controls(controls)


async def test_a_revoked_tenant_is_suspended_while_the_others_flow_and_resumed_with_what_it_missed(
    stack_factory: Any,
) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    home = tenants[0]
    try:
        await controls[home].call("POST", f"/tenants/{B}/revoke", {"code": 65001})
        await stack.worker.renew(utcnow())
        suspended = await _tenant(stack, B)
        assert (suspended.status, suspended.reason) == (SUSPENDED, "AADSTS65001")
        missed = await controls[B].create_item(DRIVE, "while-suspended.txt", "x")
        flowing = await controls[C].create_item(DRIVE, "meanwhile.txt", "y")
        await stack.pump(lambda: bool(stack.for_item(flowing["id"])))
        assert stack.for_item(missed["id"]) == []

        await controls[home].call("POST", f"/tenants/{B}/restore")
        await stack.worker.renew(utcnow() + timedelta(minutes=30))  # not yet: retried hourly
        assert (await _tenant(stack, B)).status == SUSPENDED
        await stack.worker.renew(utcnow() + timedelta(hours=1, minutes=1))
        assert (await _tenant(stack, B)).status == ACTIVE
        await stack.pump(lambda: bool(stack.for_item(missed["id"])))
        [event] = stack.for_item(missed["id"])
        assert event["tenantId"] == B and event["changeType"] in ("created", "updated")
    finally:
        await close_controls(controls)


async def test_a_removal_cut_short_by_a_crash_is_finished_by_the_next_tick(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    try:
        # The tenant has had a change: index rows, a last notification time, a last pass to leave behind.
        item = await controls[C].create_item(DRIVE, "before-leaving.txt", "z")
        await stack.pump(lambda: bool(stack.for_item(item["id"])))
        async with table_client(stack.connection, TENANTS_TABLE) as client:
            store = TenantStore(client)
            stored = await store.get(C)
            assert stored is not None
            await store.save(stored.tenant.removing(utcnow()), stored.etag)
        renewal = stack.worker.tenants
        assert renewal is not None
        reconciler = renewal._reconciler_of(C)
        real = reconciler.forsake
        calls = 0

        async def crash(record: Any) -> None:
            nonlocal calls
            calls += 1
            await real(record)
            raise RuntimeError("the instance died here")

        reconciler.forsake = crash  # type: ignore[method-assign]
        report = await renewal.tick(stack.worker.settings.subscriptions, utcnow())
        assert (report.failed, calls) == (1, 1)
        assert (await _tenant(stack, C)).status == "removing"
        reconciler.forsake = real  # type: ignore[method-assign]

        report = await renewal.tick(stack.worker.settings.subscriptions, utcnow())
        assert report.removed == 1
        assert await _tenant(stack, C) is None
        assert [r for r in await _records(stack) if r.tenant == C] == []
        assert not [s for s in await controls[C].subscriptions()]  # deleted at Graph too
        await stack.pump(lambda: any(e["kind"] == "tenant" for e in stack.events))
        [removed] = [e for e in stack.events if e["kind"] == "tenant"]
        assert (removed["changeType"], removed["tenantId"]) == ("removed", C)
        # The other tenants keep their subscriptions.
        assert sorted({r.tenant for r in await _records(stack)}) == sorted(tenants[:2])
        assert await rows_of(stack, C) == []  # nothing left behind, in any table
    finally:
        await close_controls(controls)


@pytest.mark.parametrize("mode", ["single"])
async def test_single_mode_keys_stay_unscoped(stack_factory: Any, mode: str) -> None:
    stack = await stack_factory()
    await stack.reconcile()
    [record] = await _records(stack)
    assert record.key == f"{RESOURCE.replace('/', ':')}|updated" and record.tenant == ""


async def test_a_tenant_in_a_429_storm_delays_no_other_tenant_and_loses_nothing(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    home = tenants[0]
    try:
        await controls[home].call("POST", f"/tenants/{B}/throttle", {"seconds": 600, "status": 429, "retryAfter": 3})
        stormed = await controls[B].create_item(DRIVE, "in-the-storm.txt", "x")
        calm = await controls[C].create_item(DRIVE, "calm.txt", "y")
        started = time.monotonic()
        await stack.pump(lambda: bool(stack.for_item(calm["id"])))
        # The storm's Retry-After is not waited out on a worker: the calm tenant's event came at once.
        assert time.monotonic() - started < 8
        assert stack.for_item(stormed["id"]) == []

        await controls[home].call("POST", f"/tenants/{B}/throttle", {"seconds": 0})
        await stack.pump(lambda: bool(stack.for_item(stormed["id"])), within=30)
        [event] = stack.for_item(stormed["id"])
        assert (event["tenantId"], event["changeType"]) == (B, "created")
    finally:
        await close_controls(controls)


async def _handle_delivered(stack: Stack, control: TenantControl, crash_before_delete: bool = False) -> None:
    """Once the simulator has delivered, handle the visible notifications as the host would.

    With ``crash_before_delete`` the instance dies after handling, before deleting: each
    message comes back (after its visibility timeout) and is handled again.
    """

    deadline = time.monotonic() + 20
    while (await control.stats())["delivery"]["pending"]:
        assert time.monotonic() < deadline, "the simulator did not deliver"
        await asyncio.sleep(0.1)
    async with queue_client(stack.connection, NOTIFICATIONS_QUEUE) as client:
        messages = [m async for m in client.receive_messages(max_messages=16, visibility_timeout=1)]
        assert messages, "no notification reached the queue"
        for message in messages:
            await stack.worker.processor.handle(message.content, message.inserted_on, message.dequeue_count)
        if crash_before_delete:
            handled, messages = len(messages), []
            while len(messages) < handled:  # back after their 1 s, or a little later on a loaded box
                assert time.monotonic() < deadline + 10, "the undeleted messages did not come back"
                await asyncio.sleep(0.2)
                messages += [m async for m in client.receive_messages(max_messages=16, visibility_timeout=30)]
            for message in messages:
                await stack.worker.processor.handle(message.content, message.inserted_on, message.dequeue_count)
        for message in messages:
            await client.delete_message(message)


async def test_a_throttled_tenants_notifications_wait_on_one_message_per_subscription(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    home = tenants[0]
    try:
        await controls[home].call("POST", f"/tenants/{B}/throttle", {"seconds": 600, "status": 429, "retryAfter": 8})
        items = []
        for n in range(3):
            items.append(await controls[B].create_item(DRIVE, f"in-the-storm-{n}.txt", "x"))
            await _handle_delivered(stack, controls[home], crash_before_delete=n == 2)
        # Put off three times (the last one twice), yet one message waits: each later one rode on the first.
        assert await peek_count(stack.connection, NOTIFICATIONS_QUEUE) == 1

        await controls[home].call("POST", f"/tenants/{B}/throttle", {"seconds": 0})
        await stack.pump(lambda: all(stack.for_item(i["id"]) for i in items), within=30)
        for item in items:
            [event] = stack.for_item(item["id"])
            assert (event["tenantId"], event["changeType"]) == (B, "created")
    finally:
        await close_controls(controls)


async def test_a_tenant_that_hangs_holds_up_neither_the_tick_nor_the_other_tenants(stack_factory: Any) -> None:
    stack, _, controls = await three_tenants(stack_factory)
    try:
        renewal = stack.worker.tenants
        assert renewal is not None
        renewal._deadline = 1.0
        stuck = renewal._reconciler_of(B)

        async def hang(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(30)

        stuck.reconcile = hang  # type: ignore[method-assign]
        started = time.monotonic()
        report = await renewal.tick(stack.worker.settings.subscriptions, utcnow())
        assert time.monotonic() - started < 5
        assert (report.reconciled, report.timed_out) == (2, 1)
    finally:
        await close_controls(controls)


async def test_a_suspended_tenant_that_consents_again_is_resynced_at_once(stack_factory: Any) -> None:
    stack, tenants, controls = await three_tenants(stack_factory)
    try:
        await controls[tenants[0]].call("POST", f"/tenants/{B}/revoke", {"code": 65001})
        await stack.worker.renew(utcnow())
        assert (await _tenant(stack, B)).status == SUSPENDED
        missed = await controls[B].create_item(DRIVE, "while-revoked.txt", "x")
        await stack.pump(lambda: True)
        assert stack.for_item(missed["id"]) == []

        # The admin consents again: the callback registers the tenant and queues its start.
        await controls[tenants[0]].call("POST", f"/tenants/{B}/restore")
        async with table_client(stack.connection, TENANTS_TABLE) as client:
            await register_consent(TenantStore(client), B, "tenant b", utcnow())
        async with queue_client(stack.connection, NOTIFICATIONS_QUEUE) as queue:
            await schedule(MessageQueue(queue), B, utcnow())
        await stack.pump(lambda: bool(stack.for_item(missed["id"])), within=15)
        [event] = stack.for_item(missed["id"])
        assert event["tenantId"] == B
    finally:
        await close_controls(controls)


async def test_a_sink_naming_tenants_receives_only_their_events(stack_factory: Any) -> None:
    sink = {"type": "webhook", "url": "https://sink.example/h", "secret": SINK_SECRET, "name": "only-b", "tenants": [B]}
    stack, tenants, controls = await three_tenants(stack_factory, SINKS=json.dumps([sink]))
    try:
        items = {t: await controls[t].create_item(DRIVE, f"to-sink-{t[:4]}.txt", t) for t in tenants}
        await stack.pump(lambda: all(stack.for_item(items[t]["id"]) for t in tenants))
        delivered = await receive_json(stack.connection, "only-b")
        assert items[B]["id"] in {event["itemId"] for event in delivered}
        assert {event["tenantId"] for event in delivered} == {B}  # the other tenants' never reach its queue
        assert {e["tenantId"] for e in stack.events} == set(tenants)  # while graph-changes has them all
    finally:
        await close_controls(controls)
