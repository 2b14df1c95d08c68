"""Wiring only: each trigger hands its input to shared/ and maps the result back.

Imports here stay light (azure.functions and the standard library): the SDKs
load on first use, so a cold start answers Graph's handshake in time.
"""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from shared.app.consent import build_consent
from shared.app.health import build_health
from shared.app.lazy import Lazy
from shared.app.receivers import build_ingest
from shared.app.sinks import build_sinks
from shared.app.worker import build_worker
from shared.clock import utcnow
from shared.config.settings import http_auth_level, renew_schedule
from shared.config.sinks import sink_queues
from shared.ingest.receiver import Reply, answer_handshake, refuse_declared_size
from shared.logs import log_event
from shared.tenants.pages import Page, not_found

# HTTP_AUTH_LEVEL: with "function", the host refuses a request without the ?code= key before any work.
app = func.FunctionApp(http_auth_level=func.AuthLevel(http_auth_level(os.environ)))
receivers = Lazy(lambda: build_ingest(os.environ))
worker = Lazy(lambda: build_worker(os.environ))
health_checks = Lazy(lambda: build_health(os.environ))
consent_flow = Lazy(lambda: build_consent(os.environ))
log = logging.getLogger("function_app")


def _respond(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, headers=dict(reply.headers), mimetype=reply.mimetype, charset="utf-8"
    )


async def _receive(req: func.HttpRequest, lifecycle: bool = False) -> func.HttpResponse:
    """Size first (the Content-Length header, before the body is touched), then the handshake, then the batch.

    The host itself refuses a body over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (infra/app/settings.bicep);
    this check holds wherever the app runs. Ingest checks the body's actual length before parsing it.
    """
    refused = refuse_declared_size(req.headers)
    if refused is not None:
        return _respond(refused)
    handshake = answer_handshake(req.params)
    if handshake is not None:
        return _respond(handshake)
    endpoints = await receivers.get()
    ingest = endpoints.lifecycle if lifecycle else endpoints.notifications
    return _respond(await ingest.accept(req.get_body(), lifecycle=lifecycle))


@app.route(route="notifications", methods=["POST"])
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph's change notifications: handshake, or check and enqueue."""
    return await _receive(req)


@app.route(route="lifecycle", methods=["POST"])
async def lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    """Graph's lifecycle events: handshake, or check and enqueue."""
    return await _receive(req, lifecycle=True)


@app.route(route="sharepoint", methods=["POST"])
async def sharepoint(req: func.HttpRequest) -> func.HttpResponse:
    """SharePoint's list webhooks: the handshake (within SharePoint's 5 s), or check and enqueue.

    SharePoint's items carry no changeType: the shared checks read that as "updated", as for OneDrive.
    """
    return await _receive(req)


def _event_fields(event: func.CloudEvent | func.EventGridEvent) -> tuple[str, object]:
    """(type, data): a CloudEvents-schema event arrives as func.CloudEvent (``type``), an Event Grid one not.

    azure-functions 1.26 gives a CloudEvent's data through ``get_json()``: it has no ``data`` attribute.
    """
    if isinstance(event, func.EventGridEvent):
        return event.event_type, event.get_json()
    return event.type, event.get_json()


@app.function_name(name="eventgrid")
@app.event_grid_trigger(arg_name="event")
async def eventgrid(event: func.CloudEvent) -> None:
    """Graph's notifications through an Event Grid partner topic: the webhook path's checks, then its queue.

    Raises (so Event Grid redelivers) when the notification was not stored.
    """
    endpoints = await receivers.get()
    await endpoints.event_grid.accept(*_event_fields(event))


@app.queue_trigger(arg_name="msg", queue_name="graph-notifications", connection="AzureWebJobsStorage")
async def process(msg: func.QueueMessage) -> None:
    """Resolve stored notifications into change events with delta queries."""
    processor = (await worker.get()).processor
    summary = await processor.handle(msg.get_body(), msg.insertion_time, msg.dequeue_count or 1)
    log_event(log, "message.processed", message_id=msg.id, dequeue_count=msg.dequeue_count, **vars(summary))


@app.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 or 503 with a JSON reason: storage, a Graph token, subscriptions, queue depths, the oldest sync."""
    verdict = await (await health_checks.get()).monitor.check()
    body = json.dumps(verdict.body)
    return func.HttpResponse(body, status_code=verdict.status, mimetype="application/json", charset="utf-8")


def _page(page: Page) -> func.HttpResponse:
    return func.HttpResponse(
        page.body, status_code=page.status, headers=dict(page.headers), mimetype=page.mimetype, charset="utf-8"
    )


# A customer's admin arrives from the identity platform without a function key: always anonymous.
@app.route(route="consent/start", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def consent_start(req: func.HttpRequest) -> func.HttpResponse:
    """TENANT_MODE=multi: 302 to the identity platform's admin consent, with a signed state (404 otherwise)."""
    flow = (await consent_flow.get()).flow
    return _page(not_found() if flow is None else await flow.start(req.params, utcnow()))


@app.route(route="consent", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def consent(req: func.HttpRequest) -> func.HttpResponse:
    """TENANT_MODE=multi: the admin consent's reply; registers the tenant and schedules its subscriptions."""
    flow = (await consent_flow.get()).flow
    return _page(not_found() if flow is None else await flow.finish(req.params, utcnow()))


@app.timer_trigger(arg_name="timer", schedule=renew_schedule(os.environ), run_on_startup=False)
async def renew(timer: func.TimerRequest) -> None:
    """Create, renew, re-create and delete subscriptions (Graph's and SharePoint's), then sweep."""
    await (await worker.get()).renew(utcnow())


def _sink_trigger(queue: str) -> None:
    """One queue trigger per SINKS entry: the host binds queue names when it indexes the app."""

    @app.function_name(name="sink_" + queue.replace("-", "_"))
    @app.queue_trigger(arg_name="msg", queue_name=queue, connection="AzureWebJobsStorage")
    async def deliver(msg: func.QueueMessage) -> None:
        runner = (await sinks.get()).runner(queue)
        outcome = await runner.handle(msg.get_body(), msg.dequeue_count or 1)
        log.info("sink %s, message %s: %s", queue, msg.id, outcome)


sinks = Lazy(lambda: build_sinks(os.environ))
for _queue in sink_queues(os.environ):
    _sink_trigger(_queue)
