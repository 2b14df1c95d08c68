"""Wiring only: each trigger hands its input to shared/ and maps the result back.

Imports here stay light (azure.functions and the standard library): the SDKs
load on first use, so a cold start answers Graph's handshake in time.
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared.clock import utcnow
from shared.ingest import Reply, answer_handshake
from shared.services import Lazy, build_ingest, build_worker
from shared.settings import renew_schedule

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
receivers = Lazy(lambda: build_ingest(os.environ))
worker = Lazy(lambda: build_worker(os.environ))
log = logging.getLogger("function_app")


def _respond(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, headers=dict(reply.headers), mimetype=reply.mimetype, charset="utf-8"
    )


@app.route(route="notifications", methods=["POST"])
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph's change notifications: handshake, or check and enqueue."""
    handshake = answer_handshake(req.params)
    if handshake is not None:
        return _respond(handshake)
    return _respond(await (await receivers.get()).notifications.accept(req.get_body()))


@app.route(route="lifecycle", methods=["POST"])
async def lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    """Graph's lifecycle events: handshake, or check and enqueue."""
    handshake = answer_handshake(req.params)
    if handshake is not None:
        return _respond(handshake)
    return _respond(await (await receivers.get()).lifecycle.accept(req.get_body(), lifecycle=True))


@app.queue_trigger(arg_name="msg", queue_name="graph-notifications", connection="AzureWebJobsStorage")
async def process(msg: func.QueueMessage) -> None:
    """Resolve stored notifications into change events with delta queries."""
    processor = (await worker.get()).processor
    summary = await processor.handle(msg.get_body(), msg.insertion_time, msg.dequeue_count or 1)
    log.info("processed message %s: %s", msg.id, summary)


@app.timer_trigger(arg_name="timer", schedule=renew_schedule(os.environ), run_on_startup=False)
async def renew(timer: func.TimerRequest) -> None:
    """Match the subscriptions to GRAPH_SUBSCRIPTIONS, then sweep those with no recent delta run."""
    current = await worker.get()
    try:
        await current.renewer.reconcile(current.settings.subscriptions, utcnow())
    finally:
        # The sweep needs only storage: it runs even when Graph could not be reached.
        await current.sweeper.sweep(utcnow())
