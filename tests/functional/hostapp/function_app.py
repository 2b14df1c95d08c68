"""A small v2 app exercising what the local host supports (used by tests/functional/test_host.py).

Functions record what happened by writing JSON to the queue named by Q_RECORD, so the
tests observe behaviour from outside the host process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

import azure.functions as func
from azure.storage.queue import QueueClient

log = logging.getLogger("hostapp")
STORAGE_SETTING = "AzureWebJobsStorage"
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def record(event: str, **fields: object) -> None:
    """Write one record (plain text, no base64) to the record queue."""
    client = QueueClient.from_connection_string(os.environ[STORAGE_SETTING], os.environ["Q_RECORD"])
    with client:
        client.send_message(json.dumps({"event": event, **fields}))


@app.route(route="items/{id:int}/{name?}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def items(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "header": req.headers.get("x-test"),
        "body_length": len(req.get_body()),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Served-By": "hostapp"})


@app.route(route="secret")
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.queue_trigger(arg_name="msg", queue_name="%Q_IN%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%Q_OUT%", connection="AzureWebJobsStorage")
def relay(msg: func.QueueMessage, out: func.Out[str]) -> None:
    log.info("relaying message %s", msg.id)
    out.set(msg.get_body().decode("utf-8").upper())


@app.queue_trigger(arg_name="msg", queue_name="%Q_FAIL%", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    record("attempt", dequeue_count=msg.dequeue_count)
    raise RuntimeError("this function always fails")


@app.queue_trigger(arg_name="msg", queue_name="%Q_SLOW%", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    await asyncio.to_thread(record, "started", body=msg.get_body().decode("utf-8"))
    await asyncio.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    await asyncio.to_thread(record, "finished", body=msg.get_body().decode("utf-8"))


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=True, use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due)


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=False, use_monitor=False)
def manual(timer: func.TimerRequest) -> None:
    record("manual", past_due=timer.past_due)
