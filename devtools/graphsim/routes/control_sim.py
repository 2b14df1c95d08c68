"""The control API of the simulator itself: stats, subscriptions, faults, delivery, rich batches, clock, reset.

Unlike Graph, this API returns ``clientState`` of subscriptions so tests can assert on it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..models.subscriptions import Subscription
from ..rich import FAULTS
from ..state import SimState
from .control_api import ControlError, read_json, state_of

routes = web.RouteTableDef()
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def _err(status: int, message: str) -> web.Response:
    return ControlError(status, message).response()


def _sub_out(sub: Subscription) -> dict[str, Any]:
    return {**sub.to_json(), "driveId": sub.drive_id, "immutableIds": sub.immutable_ids}


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    """Counters: delta runs/requests per drive, delivery, writes, faults."""
    state = state_of(request)
    now = state.clock.now()
    return web.json_response(
        {
            "drives": {
                d.id: {"deltaRuns": d.delta_runs, "deltaRequests": d.delta_requests, "seq": d.seq}
                for d in state.drives.drives.values()
            },
            "delivery": state.deliverer.stats.as_json(state.deliverer.pending()),
            "deliveryPaused": state.deliverer.paused,
            "duplicates": state.deliverer.duplicates,
            "deliveryFaults": _delivery_out(state),
            "subscriptionWrites": state.subscription_writes,
            "subscriptionsActive": len(state.subs.for_app(state.config.client_id, now)),
            "throttled": state.throttle.throttled,
            "faultsInjected": state.faults.injected,
            "graphRequests": state.graph_requests,
            "authFailures": state.auth_failures,
            "clockOffsetSeconds": state.clock.offset.total_seconds(),
        }
    )


@routes.post("/_sim/stats/reset")
async def stats_reset(request: web.Request) -> web.Response:
    """Zero all counters."""
    state_of(request).reset_stats()
    return web.json_response({"ok": True})


@routes.get("/_sim/subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    """All active subscriptions, clientState included."""
    state = state_of(request)
    state.subs.prune(state.clock.now())
    return web.json_response({"value": [_sub_out(s) for s in state.subs.subs.values()]})


@routes.delete("/_sim/subscriptions/{id}")
async def drop_subscription(request: web.Request) -> web.Response:
    """Remove a subscription on the Graph side without telling anyone."""
    state = state_of(request)
    if state.subs.subs.pop(request.match_info["id"], None) is None:
        return _err(404, "no such subscription")
    return web.json_response({"deleted": True})


@routes.post("/_sim/subscriptions/{id}/lifecycle")
async def lifecycle(request: web.Request) -> web.Response:
    """Send a lifecycle event: {"event": reauthorizationRequired|subscriptionRemoved|missed}."""
    state, body = state_of(request), await read_json(request)
    event = body.get("event")
    if event not in LIFECYCLE_EVENTS:
        return _err(400, f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
    state.subs.prune(state.clock.now())
    sub = state.subs.subs.get(request.match_info["id"])
    if sub is None:
        return _err(404, "no such subscription")
    queued = state.lifecycle(sub, str(event))
    return web.json_response({"queued": queued, "event": event, "removed": event == "subscriptionRemoved"})


@routes.post("/_sim/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Inject: {"method"?, "path": regex, "status", "count"?: 1, "retryAfter"?}."""
    body = await read_json(request)
    if "path" not in body or "status" not in body:
        return _err(400, "path and status are required")
    retry_after = body.get("retryAfter")
    fault = state_of(request).faults.add(
        str(body["path"]),
        int(body["status"]),
        int(body.get("count", 1)),
        body.get("method"),
        None if retry_after is None else int(retry_after),
    )
    return web.json_response(fault.as_json(), status=201)


@routes.get("/_sim/faults")
async def list_faults(request: web.Request) -> web.Response:
    """Faults with requests left to hit."""
    return web.json_response({"value": [f.as_json() for f in state_of(request).faults.faults]})


@routes.delete("/_sim/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Remove all faults."""
    state_of(request).faults.clear()
    return web.json_response({"ok": True})


@routes.post("/_sim/delivery")
async def delivery(request: web.Request) -> web.Response:
    """Steer delivery: {"duplicates"?: N, "paused"?: bool, "drop"?: bool, "delaySeconds"?: s, "deltaLagSeconds"?: s}.

    ``drop``: new change notifications are counted as dropped and never sent (delta still
    shows the changes).  ``delaySeconds``: each batch waits that long before its first
    attempt.  ``deltaLagSeconds``: changes show in delta only that long after their
    notification is sent.  Reset clears all three.
    """
    state, body = state_of(request), await read_json(request)
    try:
        if "duplicates" in body:
            state.deliverer.duplicates = max(1, int(body["duplicates"]))
        if "paused" in body:
            state.deliverer.set_paused(bool(body["paused"]))
        if "drop" in body:
            state.deliverer.drop = bool(body["drop"])
        if "delaySeconds" in body:
            state.deliverer.delay_seconds = max(0.0, float(body["delaySeconds"]))
        if "deltaLagSeconds" in body:
            state.drives.delta_lag_seconds = max(0.0, float(body["deltaLagSeconds"]))
    except (TypeError, ValueError):
        return _err(400, "duplicates, delaySeconds and deltaLagSeconds must be numbers")
    return web.json_response(_delivery_out(state))


def _delivery_out(state: SimState) -> dict[str, Any]:
    return {
        "duplicates": state.deliverer.duplicates,
        "paused": state.deliverer.paused,
        "drop": state.deliverer.drop,
        "delaySeconds": state.deliverer.delay_seconds,
        "deltaLagSeconds": state.drives.delta_lag_seconds,
        "pending": state.deliverer.pending(),
    }


@routes.get("/_sim/rich")
async def rich_status(request: web.Request) -> web.Response:
    """The faults still pending and how many rich batches were signed."""
    rich = state_of(request).rich
    return web.json_response({"faults": rich.faults, "tokenVersion": rich.token_version, "batchesSigned": rich.signed})


@routes.post("/_sim/rich")
async def rich_control(request: web.Request) -> web.Response:
    """``{"next": ["forged", ...], "tokenVersion": 1|2}``: spoil the next rich batches, one fault each."""
    rich = state_of(request).rich
    body = await request.json() if request.can_read_body else {}
    faults = body.get("next", [])
    faults = [faults] if isinstance(faults, str) else faults
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or body.get("tokenVersion", rich.token_version) not in (1, 2):
        return web.json_response({"error": f"faults are {', '.join(FAULTS)}; tokenVersion 1 or 2"}, status=400)
    rich.faults.extend(faults)
    rich.token_version = int(body.get("tokenVersion", rich.token_version))
    return web.json_response({"faults": rich.faults, "tokenVersion": rich.token_version})


@routes.post("/_sim/clock")
async def clock(request: web.Request) -> web.Response:
    """Shift the simulator's clock: {"advanceSeconds": s}."""
    state, body = state_of(request), await read_json(request)
    state.clock.advance(float(body.get("advanceSeconds", 0)))
    state.subs.prune(state.clock.now())
    return web.json_response(
        {"now": state.clock.now().isoformat(), "offsetSeconds": state.clock.offset.total_seconds()}
    )


@routes.post("/_sim/reset")
async def reset(request: web.Request) -> web.Response:
    """Forget all drives, subscriptions, faults, queued notifications and counters."""
    state_of(request).reset()
    return web.json_response({"ok": True})
