"""The control API of the Event Grid side: partner topics, their activation and destination, dead letters, retries.

Topics are Azure resources, shared by all tenants: these routes ignore ``?tenant``.

- ``GET /_sim/eventgrid/topics``: the partner topics Graph created.
- ``POST /_sim/eventgrid/topics/activate`` ``{"url"}`` (the subscription's ``EventGrid:`` URL) or
  ``{"name", "azureSubscriptionId"?, "resourceGroup"?, "location"?}``, with ``"destination"``: the
  local equivalent of activating the topic and creating its event subscription (the handler's URL,
  e.g. the local host's ``/runtime/webhooks/eventgrid?functionName=...``). 404 for a topic Graph
  has not created.
- ``POST /_sim/eventgrid/topics/deactivate``: the same selectors; later events are dropped.
- ``GET /_sim/eventgrid/deadletters``, ``DELETE`` to empty them.
- ``GET /_sim/eventgrid/retry``; ``POST`` ``{"scale"?, "schedule"?: [seconds], "maxAttempts"?, "ttlSeconds"?}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import GraphError
from ..eventgrid import ACTIVATED, DEACTIVATED, PartnerTopic, parse_url
from ..eventgrid_delivery import EventGridChannel, RetryPolicy
from .control_api import ControlError, read_json, state_of

routes = web.RouteTableDef()


def _channel(request: web.Request) -> EventGridChannel:
    return state_of(request).deliverer.eventgrid


def _topic(channel: EventGridChannel, body: dict[str, Any]) -> PartnerTopic:
    """The topic a control request names, or a ControlError."""
    if body.get("url"):
        try:
            key = parse_url(str(body["url"]), "url")
        except GraphError as exc:
            raise ControlError(400, exc.message) from exc
        found = channel.topics.find(key)
    else:
        wanted = {
            "name": body.get("name"),
            "azure_subscription_id": body.get("azureSubscriptionId"),
            "resource_group": body.get("resourceGroup"),
            "location": body.get("location"),
        }
        if not wanted["name"]:
            raise ControlError(400, "give the topic's url, or its name")
        matches = [
            t
            for t in channel.topics.topics
            if all(v is None or str(getattr(t.key, k)).lower() == str(v).lower() for k, v in wanted.items())
        ]
        if len(matches) > 1:
            raise ControlError(409, "several topics have that name: add azureSubscriptionId, resourceGroup, location")
        found = matches[0] if matches else None
    if found is None:
        raise ControlError(404, "no such partner topic: Graph creates it with the first subscription that names it")
    return found


@routes.get("/_sim/eventgrid/topics")
async def list_topics(request: web.Request) -> web.Response:
    """Every partner topic with its activation state, destination and counters."""
    return web.json_response({"value": [t.as_json() for t in _channel(request).topics.topics]})


@routes.post("/_sim/eventgrid/topics/activate")
async def activate(request: web.Request) -> web.Response:
    """Activate a topic and point its event subscription at ``destination``."""
    body = await read_json(request)
    try:
        topic = _topic(_channel(request), body)
    except ControlError as exc:
        return exc.response()
    destination = body.get("destination", topic.destination)
    if destination is not None:
        parts = urlsplit(str(destination))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return ControlError(400, "destination must be an http(s) URL").response()
    topic.activation_state, topic.destination = ACTIVATED, destination
    return web.json_response(topic.as_json())


@routes.post("/_sim/eventgrid/topics/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    """Deactivate a topic: events published from now on are dropped."""
    try:
        topic = _topic(_channel(request), await read_json(request))
    except ControlError as exc:
        return exc.response()
    topic.activation_state = DEACTIVATED
    return web.json_response(topic.as_json())


@routes.get("/_sim/eventgrid/deadletters")
async def dead_letters(request: web.Request) -> web.Response:
    """Dead-lettered events, oldest first, with deadletterreason, deliveryattempts and lastdeliveryoutcome."""
    return web.json_response({"value": _channel(request).dead_letters})


@routes.delete("/_sim/eventgrid/deadletters")
async def clear_dead_letters(request: web.Request) -> web.Response:
    """Forget the dead letters."""
    _channel(request).dead_letters.clear()
    return web.json_response({"ok": True})


@routes.get("/_sim/eventgrid/retry")
async def retry_policy(request: web.Request) -> web.Response:
    """The retry policy in force."""
    return web.json_response(_channel(request).policy.as_json())


@routes.post("/_sim/eventgrid/retry")
async def set_retry_policy(request: web.Request) -> web.Response:
    """Change the scale, schedule, attempts or time to live; reset restores the defaults."""
    channel, body = _channel(request), await read_json(request)
    old = channel.policy
    try:
        schedule = tuple(float(s) for s in body.get("schedule", old.schedule))
        policy = RetryPolicy(
            scale=float(body.get("scale", old.scale)),
            schedule=schedule,
            max_attempts=int(body.get("maxAttempts", old.max_attempts)),
            ttl_seconds=float(body.get("ttlSeconds", old.ttl_seconds)),
        )
    except (TypeError, ValueError):
        return ControlError(400, "scale, schedule (seconds), maxAttempts and ttlSeconds must be numbers").response()
    if not schedule or min(schedule) < 0 or policy.scale < 0 or not 1 <= policy.max_attempts <= 30:
        return ControlError(400, "schedule must be non-negative seconds, scale >= 0, maxAttempts 1 to 30").response()
    channel.policy = policy
    return web.json_response(policy.as_json())
