"""Graph's ``/subscriptions`` endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from aiohttp import web

from .. import handshake
from ..errors import GraphError, empty_response, json_response
from ..eventgrid import is_eventgrid, parse_url
from ..models.subscriptions import RULE_KIND, build, check_expiration, max_minutes, resource_path, rule_for
from ..rich import checked_certificate
from ..state import SimState

log = logging.getLogger("graphsim.subscriptions")
LIST_PAGE = 100


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise GraphError(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please "
            "ensure Content-Type header is set and payload is of valid JSON "
            "format.",
        ) from exc


async def _write(state: SimState) -> None:
    """Throttle (per tenant, then across tenants if limited), count and delay a write as Graph's latency would.

    No lock: writes of different tenants, and of one tenant, proceed together, as at Graph.
    """
    state.throttle.hit()
    if state.app_throttle is not None:
        state.app_throttle.hit()
    state.subscription_writes += 1
    if state.config.write_latency_ms:
        await asyncio.sleep(state.config.write_latency_ms / 1000)


async def create(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """POST /subscriptions: validate, handshake, store, 201."""
    await _write(state)
    now = state.clock.now()
    sub, kind, key = build(await _body(request), now, claims["appid"], claims["oid"])
    sub.immutable_ids = 'idtype="immutableid"' in request.headers.get("Prefer", "").lower().replace(" ", "")
    rule = rule_for(sub.resource) if kind == RULE_KIND else None
    if rule is not None:
        if not rule.exists(state, resource_path(sub.resource)):
            raise GraphError(404, "ResourceNotFound", "The resource could not be found.")
    else:
        drive = state.drives.find(kind, key)
        if drive is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        sub.drive_id = drive.id
    if len(state.subs.for_app(sub.application_id, now)) >= state.config.subscription_quota:
        raise GraphError(403, "Forbidden", "The number of subscriptions for this application has reached the limit.")
    # No 409 for a duplicate: "Each subscription has a unique subscriptionId, even if you have multiple
    # subscriptions that monitor the same resource and use the same notification URL"
    # (GD concepts/change-notifications-delivery-webhooks.md). The 409 of the Event Hubs and Event Grid
    # pages is not a webhook's.
    timeout = state.config.validation_timeout_seconds
    for name, url in (("notificationUrl", sub.notification_url), ("lifecycleNotificationUrl", sub.lifecycle_url)):
        if url and is_eventgrid(url):
            # No handshake for Event Grid; Graph creates the partner topic with its first subscription.
            source = f"/tenants/{state.tenant_id}/applications/{sub.application_id}"
            state.deliverer.eventgrid.topics.ensure(parse_url(url, name), source, now)
        elif url:
            # Graph validates the lifecycle URL separately, even when it equals notificationUrl.
            await handshake.validate(state.session(), url, timeout)
    state.subs.subs[sub.id] = sub
    log.info("created subscription %s on %s", sub.id, sub.resource)
    return json_response(request, sub.to_json(state.graph_url), status=201)


async def list_subs(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /subscriptions, 100 per page with ``@odata.nextLink``."""
    subs = state.subs.for_app(claims["appid"], state.clock.now())
    skip_text = request.query.get("$skiptoken", "0")
    skip = int(skip_text) if skip_text.isdigit() else 0
    page = subs[skip : skip + LIST_PAGE]
    body: dict[str, Any] = {
        "@odata.context": f"{state.graph_url}/$metadata#subscriptions",
        # "the clientState property value is not returned for security purposes" (GD subscription-list.md).
        "value": [s.to_json() | {"clientState": None} for s in page],
    }
    if skip + LIST_PAGE < len(subs):
        body["@odata.nextLink"] = f"{state.graph_url}/subscriptions?$skiptoken={skip + LIST_PAGE}"
    return json_response(request, body)


async def get_sub(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /subscriptions/{id}."""
    sub = state.subs.get(m["id"], state.clock.now(), claims["appid"])
    return json_response(request, sub.to_json(state.graph_url))


async def patch_sub(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """PATCH /subscriptions/{id}: the expiry, and for a subscription with resource data its certificate.

    Graph's key rotation guide PATCHes ``encryptionCertificate`` and ``encryptionCertificateId``
    (GD concepts/change-notifications-with-resource-data.md, "Rotating keys"); later
    notifications are encrypted for the new certificate.
    """
    await _write(state)
    now = state.clock.now()
    sub = state.subs.get(m["id"], now, claims["appid"])
    body = await _body(request)
    rotating = isinstance(body, dict) and ("encryptionCertificate" in body or "encryptionCertificateId" in body)
    if not isinstance(body, dict) or ("expirationDateTime" not in body and not rotating):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is a required property.")
    expiration = sub.expiration
    if "expirationDateTime" in body:
        expiration = check_expiration(body["expirationDateTime"], now, max_minutes(sub.resource))
    if rotating:
        if not sub.include_resource_data:
            raise GraphError(400, "InvalidRequest", "encryptionCertificate applies only with includeResourceData.")
        sub.encryption_certificate, sub.encryption_certificate_id = checked_certificate(body)
    sub.expiration = expiration
    return json_response(request, sub.to_json(state.graph_url))


async def delete_sub(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """DELETE /subscriptions/{id} -> 204."""
    await _write(state)
    sub = state.subs.get(m["id"], state.clock.now(), claims["appid"])
    del state.subs.subs[sub.id]
    return empty_response(request)


async def reauthorize(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """POST /subscriptions/{id}/reauthorize -> 204, expiry unchanged."""
    state.subs.get(m["id"], state.clock.now(), claims["appid"])
    return empty_response(request)
