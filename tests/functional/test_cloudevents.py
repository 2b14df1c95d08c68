"""EVENT_FORMAT=cloudevents against Azurite and the simulator, read back with the cloudevents package.

Drive changes become CloudEvents on graph-changes, on a sink queue and on a tap, under the
native event's id (a redelivery repeats it); a webhook sink sends CloudEvents in binary and
structured mode to a receiver that verifies the Standard Webhooks signature, whichever form
its queue holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from devtools.messages import receive_json
from shared.clock import parse_time, utcnow
from shared.errors import DeliveryRejectedError
from shared.model.event_formats import fit_structured
from shared.model.names import TAPS_TABLE
from shared.model.resources import resource_key
from shared.model.sinks import Delivery
from shared.queues.message_queue import MessageQueue
from shared.sinks.runner import SinkRunner
from shared.stores.clients import queue_client, table_client
from shared.stores.taps import CACHE_SECONDS, TapStore
from shared.sync.fanout import EventFanout
from tests.conftest import PAYLOADS
from tests.functional.stacks import DRIVE, RESOURCE, Stack, subscribed
from tests.functional.test_sinks_webhook import Clock, drain

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())
# One form alone: the root's $defs, so the CloudEvent form's data still resolves to the native form.
NATIVE = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/native"}
CLOUD = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/cloudEvent"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SINK_QUEUE = "ce-sink"
EVENT = json.loads((PAYLOADS / "sink-event-created.json").read_text())


def parse(text: str) -> BaseCloudEvent:
    """A queue message as a consumer reads it with the cloudevents package."""
    return JSONFormat().read(None, text)


async def raw_texts(connection: str, queue: str) -> list[str]:
    """Every message of ``queue`` as the text stored, taken off it."""
    texts: list[str] = []
    async with queue_client(connection, queue) as client:
        async for message in client.receive_messages(messages_per_page=32):
            texts.append(message.content)
            await client.delete_message(message)
    return texts


def of_item(stack: Stack, item_id: str) -> list[dict[str, Any]]:
    return [e for e in stack.events if e.get("subject") == item_id]


async def cloud_stack(stack_factory: Any) -> Stack:
    sink = {"type": "webhook", "url": "https://sink.example/h", "secret": SECRET, "name": SINK_QUEUE}
    return await subscribed(stack_factory, env={"EVENT_FORMAT": "cloudevents", "SINKS": json.dumps([sink])})


def check(event: BaseCloudEvent, item_id: str, change_type: str, tenant: str) -> dict[str, Any]:
    """The attributes the contract promises; returns the data (the native event)."""
    data = event.get_data()
    assert isinstance(data, dict)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == data["id"]  # the native event's stable id
    assert event.get_source() == RESOURCE == data["resource"]
    assert event.get_type() == f"com.graphhooks.{data['kind']}.{change_type}"
    assert data["kind"] == "driveItem"
    assert event.get_subject() == item_id == data["itemId"]
    assert event.get_time() == parse_time(data["observedAt"])
    assert event.get_datacontenttype() == "application/json"
    assert data["changeType"] == change_type and data["tenantId"] == tenant
    jsonschema.validate(data, NATIVE)
    return data


async def test_a_drive_change_is_a_cloudevent_on_graph_changes_and_the_sink_queue(stack_factory: Any) -> None:
    stack = await cloud_stack(stack_factory)
    await raw_texts(stack.connection, SINK_QUEUE)  # the first pass sent nothing, but be sure
    item = await stack.control.create_item(DRIVE, "report.docx", "v1")
    await stack.pump(lambda: len(of_item(stack, item["id"])) == 1)

    [message] = of_item(stack, item["id"])
    jsonschema.validate(message, SCHEMA)
    on_changes = parse(json.dumps(message))
    data = check(on_changes, item["id"], "created", stack.env["GRAPH_TENANT_ID"])
    assert data["item"]["name"] == "report.docx"
    sink_texts = await raw_texts(stack.connection, SINK_QUEUE)
    assert len(sink_texts) == 1
    on_sink = parse(sink_texts[0])
    assert on_sink.get_attributes() == on_changes.get_attributes()
    assert on_sink.get_data() == data


async def test_a_redelivered_change_keeps_its_id_and_type(stack_factory: Any) -> None:
    stack = await cloud_stack(stack_factory)
    sync = stack.worker.reconciler._sync
    before = await sync._cursors.load(resource_key(RESOURCE))
    item = await stack.control.create_item(DRIVE, "a.txt", "1")
    await stack.pump(lambda: len(of_item(stack, item["id"])) == 1)

    # As if the run had crashed after sending its events, before writing the index and the cursor.
    await sync._index.purge(resource_key(RESOURCE), [item["id"]])
    current = await sync._cursors.load(resource_key(RESOURCE))
    await sync._cursors.write(current, before.state)
    await stack.request_sync(await stack.record())
    await stack.pump(lambda: len(of_item(stack, item["id"])) == 2)

    first, again = (parse(json.dumps(e)) for e in of_item(stack, item["id"]))
    assert (again.get_id(), again.get_type()) == (first.get_id(), first.get_type())
    assert first.get_type() == "com.graphhooks.driveItem.created"
    sink = [parse(t) for t in await raw_texts(stack.connection, SINK_QUEUE)]
    # The sink got it twice too, under the same id.
    assert [(e.get_id(), e.get_type()) for e in sink if e.get_subject() == item["id"]] == [
        (first.get_id(), first.get_type())
    ] * 2


async def test_a_tap_gets_the_cloudevent_and_events_tail_prints_it(stack_factory: Any, capsys: Any) -> None:
    from graphhooks.events import _print

    stack = await cloud_stack(stack_factory)
    async with table_client(stack.connection, TAPS_TABLE) as client, queue_client(stack.connection, "tap-ce") as tap:
        await tap.create_queue()
        await TapStore(client).setup()
        await TapStore(client).register("tap-ce", utcnow())
        # The worker read the (empty) taps when the first pass sent the root's event: as `events tail`
        # does, wait until every instance has read them again.
        await asyncio.sleep(CACHE_SECONDS)
        item = await stack.control.create_item(DRIVE, "tapped.txt", "1")
        await stack.pump(lambda: len(of_item(stack, item["id"])) == 1)
        [text] = [m.content async for m in tap.receive_messages()]
    await tap_cleanup(stack)

    check(parse(text), item["id"], "created", stack.env["GRAPH_TENANT_ID"])
    _print(text, as_json=False)
    line = capsys.readouterr().out
    assert "created" in line and item["id"] in line and "tapped.txt" in line


async def tap_cleanup(stack: Stack) -> None:
    async with table_client(stack.connection, TAPS_TABLE) as client:
        await TapStore(client).remove("tap-ce")


async def test_native_stays_the_default(stack_factory: Any) -> None:
    stack = await subscribed(stack_factory)
    item = await stack.control.create_item(DRIVE, "plain.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    [event] = stack.for_item(item["id"])
    assert "specversion" not in event and event["kind"] == "driveItem"
    jsonschema.validate(event, NATIVE)


# --- the webhook sink in binary and structured mode --------------------------------------------


@dataclass
class Receiver:
    """Verifies each request's Standard Webhooks signature over the raw body and keeps the verified ones."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(SECRET).verify(body.decode(), headers)
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.requests.append((headers, body))
        return web.Response(status=204)


@pytest.fixture
async def receiver(hook_server: Callable[..., Awaitable[str]]) -> Receiver:
    hook = Receiver("")
    hook.url = await hook_server(hook.handle)
    return hook


@pytest.mark.parametrize("queued", ["native", "cloudevents"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_the_webhook_sends_a_signed_cloudevent(
    azurite: Any, unique_name: Any, receiver: Receiver, mode: str, queued: str
) -> None:
    from shared.app.sinks import build_sinks

    queue = unique_name("cehook")
    sinks = [{"type": "webhook", "url": receiver.url, "secret": SECRET, "name": queue, "cloudevents": mode}]
    env = {"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)}
    runtime = await build_sinks(env, tempo=0.1, clock=Clock())
    changes = unique_name("changes")
    try:
        async with (
            queue_client(azurite.connection_string, changes) as c,
            queue_client(azurite.connection_string, queue) as s,
        ):
            await EventFanout(MessageQueue(c), [MessageQueue(s)], event_format=queued).send_all([json.dumps(EVENT)])
        await drain(runtime, azurite.connection_string, queue, lambda: len(receiver.requests) == 1, 10)
    finally:
        await runtime.close()

    assert receiver.bad_signatures == 0
    [(headers, body)] = receiver.requests
    event = from_http_event(HTTPMessage(headers, body))
    assert (event.get_id(), event.get_source()) == (EVENT["id"], EVENT["resource"])
    assert event.get_subject() == EVENT["itemId"]
    assert event.get_type() == "com.graphhooks.driveItem.created"
    assert event.get_time() == parse_time(EVENT["observedAt"])
    assert event.get_data() == EVENT  # the native event, unchanged
    assert headers["webhook-id"] == EVENT["id"]
    if mode == "binary":
        assert headers["Content-Type"] == "application/json" and headers["ce-type"] == event.get_type()
        assert json.loads(body) == EVENT
    else:
        assert headers["Content-Type"] == "application/cloudevents+json" and "ce-type" not in headers
        jsonschema.validate(json.loads(body), CLOUD)
    assert await receive_json(azurite.connection_string, f"{queue}-poison") == []


async def test_a_webhook_without_the_option_sends_the_native_event_from_a_cloudevents_queue(
    azurite: Any, unique_name: Any, receiver: Receiver
) -> None:
    from shared.app.sinks import build_sinks

    queue = unique_name("cehook")
    sinks = [{"type": "webhook", "url": receiver.url, "secret": SECRET, "name": queue}]
    env = {"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)}
    runtime = await build_sinks(env, tempo=0.1, clock=Clock())
    try:
        async with (
            queue_client(azurite.connection_string, unique_name("changes")) as c,
            queue_client(azurite.connection_string, queue) as s,
        ):
            fanout = EventFanout(MessageQueue(c), [MessageQueue(s)], event_format="cloudevents")
            await fanout.send_all([json.dumps(EVENT)])
        await drain(runtime, azurite.connection_string, queue, lambda: len(receiver.requests) == 1, 10)
    finally:
        await runtime.close()
    [(headers, body)] = receiver.requests
    assert json.loads(body) == EVENT and headers["Content-Type"] == "application/json"
    assert not any(name.lower().startswith("ce-") for name in headers)


class Refusing:
    """A sink that records what it is handed and refuses it (as a 4xx would)."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.abandoned: list[dict[str, Any]] = []

    async def deliver(self, messages: Any) -> None:
        self.delivered += messages
        raise DeliveryRejectedError("HTTP 422")

    async def abandon(self, messages: Any) -> None:
        self.abandoned += messages

    async def close(self) -> None:
        pass


async def test_every_sink_is_handed_the_native_event_and_the_poison_queue_keeps_the_cloudevent(
    azurite: Any, unique_name: Any
) -> None:
    queue = unique_name("cesink")
    text = fit_structured(json.dumps(EVENT))
    sink = Refusing()
    async with (
        queue_client(azurite.connection_string, queue) as q,
        queue_client(azurite.connection_string, f"{queue}-poison") as p,
    ):
        runner = SinkRunner(sink, Delivery(0, queue), MessageQueue(q), MessageQueue(p))
        assert await runner.handle(text) == "poisoned"

    assert sink.delivered == sink.abandoned == [EVENT]
    [kept] = await raw_texts(azurite.connection_string, f"{queue}-poison")
    assert parse(kept).get_attributes() == parse(text).get_attributes()  # replayable as it came
    assert parse(kept).get_data() == EVENT
