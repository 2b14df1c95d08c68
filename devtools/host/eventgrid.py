"""The Event Grid trigger's webhook, `/runtime/webhooks/eventgrid?functionName={name}`, as the real host serves it.

Mirrors the extension's HTTP handling (Azure/azure-sdk-for-net, sdk/eventgrid/
Microsoft.Azure.WebJobs.Extensions.EventGrid: Config/EventGridExtensionConfigProvider.cs and
TriggerBinding/HttpRequestProcessor.cs):

- an unknown or missing `functionName` answers 404 `cannot find function: '{name}'`;
- `OPTIONS` is the CloudEvents abuse-protection handshake: 200 with `WebHook-Allowed-Origin`
  (the request's `WebHook-Request-Origin` when it is one of Event Grid's clouds, else
  `eventgrid.azure.net`);
- `aeg-event-type: SubscriptionValidation` answers `{"validationResponse": code}`;
  `Notification` runs the function once per event (the body is one event or an array), all at
  once, and answers 202 when every invocation succeeded, else 500 with the first error's
  message, so Event Grid redelivers; `Unsubscribe` answers 202; any other value, or none, 400;
- a body that is not a JSON object or array fails the request (500), as the extension throws.

Each event reaches the function as the Python worker hands it: azure.functions'
`EventGridEventInConverter.decode` of a json datum, so a CloudEvents-schema event arrives as
`func.CloudEvent` and an Event Grid-schema one as `func.EventGridEvent`.

The real host wants the `eventgrid_extension` system key (`code=` or `x-functions-key`); this
host enforces its one key here when keys are enforced, as for its other admin-level routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

from devtools.host.http import key_matches, raw_query, read_body, too_large
from devtools.host.invoker import InvocationResult, Invoker
from devtools.host.loader import FunctionSpec
from devtools.host.routing import parse_query

log = logging.getLogger("devtools.host")

ROUTE = "/runtime/webhooks/eventgrid"
TRIGGER_TYPE = "eventgridtrigger"
PUBLIC_ORIGIN = "eventgrid.azure.net"
# The origins the extension echoes back (HttpRequestProcessor.GetAllowedOriginResponseHeader).
KNOWN_ORIGINS = frozenset(
    {
        PUBLIC_ORIGIN,
        "eventgrid.azure.us",
        "eventgrid.azure.eaglex.ic.gov",
        "eventgrid.azure.microsoft.scloud",
        "eventgrid.azure.cn",
    }
)
REASON = "EventGrid trigger fired"


def is_route(path: str) -> bool:
    """Whether a request path is the Event Grid webhook (matched without case, as the host does)."""
    return path.rstrip("/").lower() == ROUTE


def decode_event(event: Any) -> Any:
    """What the Python worker passes for one event: func.CloudEvent or func.EventGridEvent."""
    datum = Datum(json.dumps(event), "json")  # type: ignore[no-untyped-call]
    return EventGridEventInConverter.decode(datum, trigger_metadata=None)


def allowed_origin(requested: str | None) -> str:
    """The `WebHook-Allowed-Origin` the extension answers to a `WebHook-Request-Origin`."""
    return requested if requested in KNOWN_ORIGINS else PUBLIC_ORIGIN


class EventGridWebhook:
    """Serves the webhook for the app's `eventGridTrigger` functions."""

    def __init__(self, functions: Mapping[str, FunctionSpec], invoker: Invoker, key: str | None, max_body: int) -> None:
        self._functions = {name.lower(): spec for name, spec in functions.items()}
        self._invoker = invoker
        self._key = key
        self._max_body = max_body
        self.accepting = True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for every method on the webhook route."""
        if not key_matches(request, self._key):
            return web.Response(status=401)
        name = parse_query(raw_query(request)).get("functionName", "")
        spec = self._functions.get(name.lower()) if name else None
        if spec is None:
            log.info("cannot find function: '%s', available function names: [%s]", name, ", ".join(self._functions))
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        if request.method == "OPTIONS":
            origin = allowed_origin(request.headers.get("WebHook-Request-Origin"))
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})
        if not self.accepting:
            return web.Response(status=503, text="Host is shutting down")
        kind = (request.headers.get("aeg-event-type") or "").lower()
        if kind not in ("notification", "subscriptionvalidation"):
            return web.Response(status=202 if kind == "unsubscribe" else 400)
        body = await read_body(request, self._max_body)
        if body is None:
            return too_large(self._max_body)
        try:
            events = _events(body)
        except ValueError as exc:
            log.error("Event Grid request for %s is not a JSON object or array: %s", spec.name, exc)
            return web.Response(status=500, text=str(exc))
        if kind == "subscriptionvalidation":
            return _validation(events)
        return await self._notify(spec, events)

    async def _notify(self, spec: FunctionSpec, events: list[Any]) -> web.Response:
        results = await asyncio.gather(*(self._invoke(spec, event) for event in events))
        failed = next((r for r in results if not r.succeeded), None)
        if failed is not None:
            return web.Response(status=500, text=str(failed.error or "function failed"))
        return web.Response(status=202)

    async def _invoke(self, spec: FunctionSpec, event: Any) -> InvocationResult:
        try:
            value = decode_event(event)
        except Exception as exc:  # noqa: BLE001 - a binding error fails the invocation, as in the worker
            log.error("Functions.%s: the event could not be bound: %s", spec.name, exc)
            return InvocationResult(invocation_id="-", succeeded=False, error=exc)
        return await self._invoker.invoke(spec, value, REASON)


def _events(body: bytes) -> list[Any]:
    """The events of a request: an array as is, an object as one event."""
    try:
        token = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if isinstance(token, list):
        return token
    if isinstance(token, dict):
        return [token]
    raise ValueError(f"the request content should be a JSON object or array, but was {type(token).__name__}")


def _validation(events: list[Any]) -> web.Response:
    # Event Grid schema: [{"data": {"validationCode": ...}}] (the extension reads the first event).
    try:
        code = events[0]["data"]["validationCode"]
    except (IndexError, KeyError, TypeError):
        return web.Response(status=500, text="no data.validationCode in the validation event")
    return web.json_response({"validationResponse": code})
