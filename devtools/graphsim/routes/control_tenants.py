"""The control API of tenants (``/_sim/tenants``) and of the admin consent endpoint (``/_sim/consent``).

- ``GET /_sim/tenants``: every tenant (``{"value": [...]}``), each ``{"tenant", "home", "consented",
  "revoked", "active"}`` and, once it has a state, its counters and current storm.
- ``POST /_sim/tenants`` ``{"tenant": id, "consented": true|false}`` (default true): add a tenant, or
  set an existing one's consent (true also clears a revocation); 201 when new, else 200.
- ``GET|DELETE /_sim/tenants/{id}``: one tenant; forget one (not the home tenant).
- ``POST /_sim/tenants/{id}/revoke`` ``{"code": 65001|7000112|700016}`` (default 65001): its token
  requests fail with that AADSTS error, its Graph tokens answer 401; ``.../restore`` undoes it.
- ``POST /_sim/tenants/{id}/throttle`` ``{"seconds": N, "status": 429|503, "retryAfter": S}``: every
  Graph request of the tenant answers ``status`` with ``Retry-After: S`` for N seconds of simulator
  time (0 ends it). Other tenants are untouched.
- ``POST /_sim/consent`` ``{"decision": "accept"|"deny", "tenant"?: id, "error"?: "consent_required"|
  "access_denied"}``: queue what the next admin consent request does; ``GET /_sim/consent`` shows the
  queue, ``DELETE`` empties it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..state import STATE, SimState
from ..tenants import DENIALS, REVOCATIONS, TENANT_ID, ConsentDecision, Tenant, Tenants
from .control_api import ControlError, missing, read_json

routes = web.RouteTableDef()


def _tenants(request: web.Request) -> Tenants[SimState]:
    return request.app[STATE].tenants


def _record(request: web.Request) -> Tenant[SimState]:
    found = _tenants(request).get(request.match_info["id"])
    if found is None:
        raise missing("tenant")
    return found


def _out(request: web.Request, record: Tenant[SimState], status: int = 200) -> web.Response:
    return web.json_response(record.as_json(_tenants(request).home_id), status=status)


@routes.get("/_sim/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    """Every tenant the simulator knows, the home tenant first."""
    tenants = _tenants(request)
    return web.json_response({"value": [t.as_json(tenants.home_id) for t in tenants.records.values()]})


@routes.post("/_sim/tenants")
async def add_tenant(request: web.Request) -> web.Response:
    """Add a tenant: {"tenant": id, "consented": true|false}."""
    body = await read_json(request)
    tenant, consented = body.get("tenant"), body.get("consented", True)
    if not isinstance(tenant, str) or not isinstance(consented, bool):
        return ControlError(400, "tenant (a string) is required; consented is true or false").response()
    try:
        record, new = _tenants(request).add(tenant, consented)
    except ValueError as exc:
        return ControlError(400, str(exc)).response()
    return _out(request, record, 201 if new else 200)


@routes.get("/_sim/tenants/{id}")
async def get_tenant(request: web.Request) -> web.Response:
    """One tenant."""
    return _out(request, _record(request))


@routes.delete("/_sim/tenants/{id}")
async def remove_tenant(request: web.Request) -> web.Response:
    """Forget a tenant and its data: its token requests answer AADSTS90002 from then on."""
    record = _record(request)
    try:
        _tenants(request).remove(record)
    except ValueError as exc:
        return ControlError(400, str(exc)).response()
    if record.state is not None and "sharepoint" in record.state.__dict__:
        await record.state.sharepoint.close()
    return web.json_response({"deleted": record.id})


@routes.post("/_sim/tenants/{id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    """Revoke consent: {"code": 65001 (no consent) | 7000112 (app disabled) | 700016 (app deleted)}."""
    record, body = _record(request), await read_json(request)
    code = body.get("code", 65001)
    if code not in REVOCATIONS:
        return ControlError(400, f"code must be one of {', '.join(map(str, REVOCATIONS))}").response()
    record.revoked = int(code)
    return _out(request, record)


@routes.post("/_sim/tenants/{id}/restore")
async def restore(request: web.Request) -> web.Response:
    """Consent is back: tokens and Graph calls work again."""
    record = _record(request)
    record.consented, record.revoked = True, None
    return _out(request, record)


@routes.post("/_sim/tenants/{id}/throttle")
async def throttle(request: web.Request) -> web.Response:
    """A storm: {"seconds": N, "status": 429|503, "retryAfter": S}; every Graph request of the tenant fails."""
    tenants, record, body = _tenants(request), _record(request), await read_json(request)
    try:
        seconds = float(body.get("seconds", 0))
        status = int(body.get("status", 429))
        retry_after = int(body.get("retryAfter", 1))
    except (TypeError, ValueError):
        return ControlError(400, "seconds, status and retryAfter must be numbers").response()
    if status not in (429, 503) or seconds < 0 or retry_after < 0:
        return ControlError(400, "status is 429 or 503; seconds and retryAfter are not negative").response()
    state = tenants.state_of(record)
    now = state.clock.now()
    storm = state.faults.start_storm(now, seconds, status, retry_after)
    return web.json_response({"tenant": record.id, **storm.as_json(now)})


def _decisions(tenants: Tenants[SimState]) -> dict[str, Any]:
    return {"next": [d.as_json() for d in tenants.decisions]}


@routes.get("/_sim/consent")
async def consent_queue(request: web.Request) -> web.Response:
    """The decisions queued for the next admin consent requests."""
    return web.json_response(_decisions(_tenants(request)))


@routes.post("/_sim/consent")
async def queue_consent(request: web.Request) -> web.Response:
    """{"decision": "accept"|"deny", "tenant"?: id, "error"?: ...}: what the next admin consent request does."""
    tenants, body = _tenants(request), await read_json(request)
    decision, tenant, error = body.get("decision"), body.get("tenant"), body.get("error", DENIALS[0])
    if decision not in ("accept", "deny"):
        return ControlError(400, "decision is accept or deny").response()
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_ID.match(tenant)):
        return ControlError(400, "tenant must be a tenant id").response()
    if error not in DENIALS:
        return ControlError(400, f"error is one of {', '.join(DENIALS)}").response()
    tenants.decisions.append(ConsentDecision(decision == "accept", tenant, str(error)))
    return web.json_response(_decisions(tenants), status=201)


@routes.delete("/_sim/consent")
async def clear_consent(request: web.Request) -> web.Response:
    """Forget the queued decisions."""
    tenants = _tenants(request)
    tenants.decisions.clear()
    return web.json_response(_decisions(tenants))
