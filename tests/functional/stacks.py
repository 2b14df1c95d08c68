"""The pipeline in process against a real Azurite and the Graph simulator, for functional tests.

A small aiohttp receiver serves the HTTP path (shared.ingest.receiver) so the simulator's
handshakes and deliveries run over real HTTP; a pump plays the Functions host's
part for the queue trigger. The end-to-end tests run the real local host instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from devtools.azurite import Azurite, free_port
from devtools.host.http import read_body, too_large
from devtools.launch import Simulator, start_simulator
from devtools.messages import receive_json
from devtools.simclient import SimControl
from shared.app.receivers import Receivers, build_ingest
from shared.app.worker import Worker, build_worker
from shared.clock import utcnow
from shared.ingest.receiver import answer_handshake
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.model.notifications import MAX_BODY_BYTES, Envelope
from shared.queues.message_queue import MessageQueue
from shared.stores.clients import queue_client

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
        return await self.worker.reconciler.reconcile(self.worker.settings.subscriptions, utcnow() + now_offset)

    async def pump(self, until: Callable[[], bool], within: float = 20.0) -> None:
        """Process notification messages like the host would, collecting events, until ``until()``."""
        client = queue_client(self.connection, NOTIFICATIONS_QUEUE)
        deadline = time.monotonic() + within
        async with client:
            while time.monotonic() < deadline:
                messages = [m async for m in client.receive_messages(max_messages=16, visibility_timeout=30)]
                for message in messages:
                    await self.worker.processor.handle(message.content, message.inserted_on, message.dequeue_count)
                    await client.delete_message(message)
                self.events += await receive_json(self.env.get("CHANGES_STORAGE") or self.connection, CHANGES_QUEUE)
                if until():
                    return
                if not messages:
                    await asyncio.sleep(0.1)
        raise TimeoutError(f"condition not met in {within} s; events so far: {len(self.events)}")

    @property
    def store(self) -> Any:
        """The worker's subscription store."""
        return self.worker.reconciler._store

    async def record(self) -> Any:
        """The one stored subscription record."""
        [record] = await self.worker.reconciler._store.list()
        return record

    async def request_sync(self, record: Any) -> None:
        """Queue a sync request for a subscription, as a notification would."""
        item = {"subscriptionId": record.subscription_id, "changeType": "updated", "resource": record.resource}
        async with queue_client(self.connection, NOTIFICATIONS_QUEUE) as client:
            await MessageQueue(client).send(Envelope("test", utcnow(), [item]).to_json())

    def for_item(self, item_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["itemId"] == item_id]

    async def subscription(self) -> dict[str, Any]:
        [sub] = [s for s in await self.control.subscriptions() if s["resource"].strip("/") == RESOURCE]
        return sub


async def _receiver(env: dict[str, str], port: int) -> tuple[web.AppRunner, Receivers]:
    receivers = await build_ingest(env)

    async def handle(request: web.Request) -> web.Response:
        """function_app's routes: a body over the limit is refused unread, as the host does
        (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT); then the handshake, or the batch (SharePoint's too)."""
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return too_large(MAX_BODY_BYTES)
        reply = answer_handshake(dict(request.query))
        if reply is None:
            lifecycle = request.path.endswith("/lifecycle")
            ingest = receivers.lifecycle if lifecycle else receivers.notifications
            reply = await ingest.accept(body, lifecycle=lifecycle)
        return web.Response(status=reply.status, text=reply.body, content_type=reply.mimetype)

    async def event_grid(request: web.Request) -> web.Response:
        """The `eventgrid` trigger as the host runs it: events bound by azure.functions; 500 if one fails."""
        from azure.functions import meta
        from azure.functions.eventgrid import EventGridEventInConverter

        body = json.loads(await request.read())
        failed = 0
        for raw in body if isinstance(body, list) else [body]:
            event = EventGridEventInConverter.decode(meta.Datum(json.dumps(raw), "json"), trigger_metadata=None)
            try:
                await receivers.event_grid.accept(event.type, event.get_json())
            except Exception:  # noqa: BLE001 - the host answers 500 for a failed invocation
                failed += 1
        return web.Response(status=500 if failed else 202)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    for route in ("notifications", "lifecycle", "sharepoint"):
        app.router.add_post(f"/api/{route}", handle)
    app.router.add_post("/runtime/webhooks/eventgrid", event_grid)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, receivers


@pytest.fixture
async def stack_factory(azurite_factory, tmp_path) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    cleanup: list[Callable[[], Awaitable[Any]]] = []

    async def make(
        *sim_options: str,
        drives: list[str] | None = None,
        subscriptions: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Stack:
        """A stack watching ``drives`` (default: DRIVE), created empty in the simulator."""
        azurite = azurite_factory()
        sim = start_simulator(tmp_path / f"sim{len(cleanup)}", "--retry-base-seconds", "0.2", *sim_options)
        cleanup.append(lambda: asyncio.to_thread(sim.stop))
        control = await SimControl(sim.control_url).__aenter__()
        cleanup.append(lambda: control.__aexit__(None, None, None))
        drives = drives or [DRIVE]
        for drive in drives:
            await control.create_drive(drive)
        port = free_port()
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "NOTIFICATION_URL": f"http://127.0.0.1:{port}/api/notifications",
            "LIFECYCLE_NOTIFICATION_URL": f"http://127.0.0.1:{port}/api/lifecycle",
            "GRAPH_SUBSCRIPTIONS": subscriptions or json.dumps([{"resource": f"drives/{d}/root"} for d in drives]),
            **sim.settings(),
            **(env or {}),
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


async def subscribed(stack_factory: Any, *options: str, **settings: Any) -> Stack:
    """A stack whose one subscription exists, with the sync requested at creation done."""
    stack = await stack_factory(*options, **settings)
    report = await stack.reconcile()
    assert (report.created, report.failed) == (len(stack.worker.settings.subscriptions), 0)
    await stack.pump(lambda: True)  # the sync requested at creation: nothing changed yet
    return stack
