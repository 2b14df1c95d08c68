"""The host's admin API: run a non-HTTP function once, and report host status."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from devtools.host.eventgrid import TRIGGER_TYPE, decode_event
from devtools.host.http import key_matches
from devtools.host.invoker import Invoker
from devtools.host.loader import FunctionSpec

log = logging.getLogger("devtools.host")


def trigger_value(spec: FunctionSpec, text: str) -> Any:
    """What a manual run passes as the trigger: the input as a message body, or a timer tick."""
    kind = spec.trigger.type.lower()
    if kind == "timertrigger":
        return TimerRequest(past_due=False)
    if kind == "queuetrigger":
        # As the host's string-to-message converter: no id or pop receipt, dequeue count 0.
        return QueueMessage(body=text.encode("utf-8"), dequeue_count=0)  # type: ignore[no-untyped-call]
    if kind == TRIGGER_TYPE:
        # The input is one event's JSON, bound as the webhook binds it.
        return decode_event(json.loads(text))
    return text


class AdminApi:
    """`POST /admin/functions/{name}` and `GET /admin/host/status`."""

    def __init__(self, functions: Mapping[str, FunctionSpec], invoker: Invoker, master_key: str | None) -> None:
        self._functions = {name.lower(): spec for name, spec in functions.items()}
        self._invoker = invoker
        self._key = master_key
        self._background: set[asyncio.Task[Any]] = set()
        self.state = "Running"

    def register(self, app: web.Application) -> None:
        """Add the admin routes (before the catch-all function route)."""
        app.router.add_get("/admin/host/status", self.status)
        app.router.add_get("/admin/functions", self.list_functions)
        app.router.add_post("/admin/functions/{name}", self.run_function)

    async def status(self, request: web.Request) -> web.Response:
        """Readiness: {"state": "Running"} once listening, "Stopping" while draining."""
        return web.json_response({"state": self.state})

    async def list_functions(self, request: web.Request) -> web.Response:
        """The indexed functions with their trigger types."""
        if not key_matches(request, self._key):
            return web.Response(status=401)
        body = [{"name": s.name, "trigger": s.trigger.type} for s in self._functions.values()]
        return web.json_response(body)

    async def run_function(self, request: web.Request) -> web.Response:
        """Run a non-HTTP function once in the background; answer 202 at once."""
        if not key_matches(request, self._key):
            return web.Response(status=401)
        spec = self._functions.get(request.match_info["name"].lower())
        if spec is None:
            return web.Response(status=404)
        if spec.trigger.type.lower() == "httptrigger":
            return web.json_response({"error": "HTTP functions are called on their route"}, status=400)
        if self.state != "Running":
            return web.Response(status=503)
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return web.json_response({"error": 'the body must be JSON such as {"input": "..."}'}, status=400)
        value = payload.get("input", "") if isinstance(payload, dict) else ""
        text = value if isinstance(value, str) else json.dumps(value)
        reason = "This function was programmatically called via the host APIs."
        try:
            value = trigger_value(spec, text)
        except ValueError:
            return web.json_response({"error": "an Event Grid function's input must be one event's JSON"}, status=400)
        task = asyncio.ensure_future(self._invoker.invoke(spec, value, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202)
