"""SharePoint's own REST API for list webhooks, as the simulator plays it.

Sites live on the simulator's plain-HTTP listener (``http://127.0.0.1:{port}/sites/{name}``:
plain http is allowed on loopback only). What it follows (sp-dev-docs docs/apis/webhooks):
- subscriptions on ``/_api/web/lists('{id}')/subscriptions``: at most 180 days; creation
  first makes the validation handshake (models/sharepoint.py); the answer's ``resource``
  is the bare list id;
- ``CurrentChangeToken`` and ``GetChanges`` (a ChangeQuery with ChangeTokenStart and
  FetchLimit); a token older than the change log (after ``expire-tokens``) raises
  SPException -2130575172;
- items with fields, ``UniqueId`` and ``owshiddenversion``, paged with ``$top`` and
  ``odata.nextLink``;
- app-only access needs a token from a certificate (a signed client assertion):
  assertions.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jwt
from aiohttp import web

from ..clock import item_time, parse_time
from ..errors import SharePointError, sharepoint_not_found
from ..models.sharepoint import MAX_LIFETIME, Change, SharePointSim, SPList, SPSubscription
from ..state import STATE, SimState

EXPIRED_CODE = "-2130575172, Microsoft.SharePoint.SPException"
EXPIRED_TEXT = "The changeToken refers to a time before the start of the current change log."
_LIST = re.compile(r"^lists\('(?P<list>[0-9a-fA-F-]{36})'\)(?P<rest>/.*)?$")
_SUB = re.compile(r"^/subscriptions\('(?P<sub>[^']+)'\)$")
_ITEM = re.compile(r"^/items\((?P<item>\d+)\)$")


def install(app: web.Application, state: SimState) -> None:
    """Add SharePoint's REST API to the plain-HTTP application; its deliveries stop with the application."""
    app.router.add_route("*", "/sites/{site}/_api/{rest:.*}", rest_entry)

    async def close(_: web.Application) -> None:
        for each in state.tenants.states():
            if each is state or "sharepoint" in each.__dict__:
                await each.sharepoint.close()

    app.on_cleanup.append(close)


def _token_tenant(request: web.Request) -> str | None:
    """The ``tid`` the bearer token claims (checked by _authenticate), if any."""
    header = request.headers.get("Authorization", "")
    try:
        tid = jwt.decode(header[7:], options={"verify_signature": False}).get("tid")
    except jwt.PyJWTError:
        return None
    return tid if isinstance(tid, str) else None


def sharepoint_of(request: web.Request) -> SharePointSim:
    """The SharePoint of the token's tenant if it is active (else the home tenant's); learns its base URL."""
    home = request.app[STATE]
    record = home.tenants.get(_token_tenant(request))
    sim = home.tenants.state_of(record).sharepoint if record is not None and record.active else home.sharepoint
    if not sim.base_url:
        sim.base_url = f"{request.scheme}://{request.host}"
    return sim


def _authenticate(request: web.Request, sim: SharePointSim) -> None:
    """A bearer token for this origin, issued for a certificate: SharePoint refuses secret-based app-only tokens."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Access denied.")
    try:
        claims = request.app[STATE].issuer.verify(header[7:], audiences=[f"http://{request.host}"])
    except jwt.PyJWTError as exc:
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Invalid token.") from exc
    if claims.get("tid") != sim.tenant_id:
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Invalid token.")
    if claims.get("appidacr") != "2":
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Unsupported app only token.")


async def rest_entry(request: web.Request) -> web.Response:
    """Every ``/sites/{site}/_api/...`` request."""
    sim = sharepoint_of(request)
    sim.stats.requests += 1
    site = request.match_info["site"]
    rest = request.match_info["rest"]
    try:
        try:
            _authenticate(request, sim)
        except SharePointError:
            sim.stats.auth_failures += 1
            raise
        if site not in sim.sites:
            raise sharepoint_not_found("Site")
        if rest == "web" and request.method == "GET":
            return web.json_response({"Id": sim.sites[site], "Url": f"{sim.base_url}/sites/{site}"})
        match = _LIST.match(rest.removeprefix("web/"))
        if match is None or not rest.startswith("web/"):
            raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Bad path.")
        target = sim.find(match["list"])
        if target.site != site:
            raise sharepoint_not_found("List")
        return await _list_route(request, sim, target, match["rest"] or "")
    except SharePointError as err:
        return err.response()


async def _list_route(request: web.Request, sim: SharePointSim, target: SPList, rest: str) -> web.Response:
    method = request.method
    if rest == "/CurrentChangeToken" and method == "GET":
        return web.json_response({"StringValue": target.token(target.number, sim.now())})
    if rest == "/GetChanges" and method == "POST":
        return await _get_changes(request, sim, target)
    if rest == "/items" and method == "GET":
        return _items(request, sim, target)
    if (m := _ITEM.match(rest)) and method == "GET":
        item = target.items.get(int(m["item"]))
        sim.stats.item_reads += 1
        if item is None:
            raise SharePointError(
                404, "-2147024809, System.ArgumentException", "Item does not exist. It may have been deleted."
            )
        return web.json_response(item.to_json())
    sim.expire(target)
    if rest == "/subscriptions" and method == "GET":
        return web.json_response({"value": [s.to_json() for s in target.subs.values()]})
    if rest == "/subscriptions" and method == "POST":
        return await _create_subscription(request, sim, target)
    if m := _SUB.match(rest):
        sub = target.subs.get(m["sub"])
        if sub is None:
            raise sharepoint_not_found("Subscription")
        if method == "GET":
            return web.json_response(sub.to_json())
        if method == "DELETE":
            del target.subs[sub.id]
            return web.Response(status=204)
        if method == "PATCH":
            body = await _body(request)
            sub.expiration = _expiry(sim, body.get("expirationDateTime"))
            if isinstance(body.get("notificationUrl"), str):
                sub.notification_url = body["notificationUrl"]
            return web.Response(status=204)
    raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Bad request.")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Invalid JSON.")
    return body


def _expiry(sim: SharePointSim, value: Any) -> datetime:
    try:
        expiry = parse_time(str(value))
    except ValueError:
        raise SharePointError(400, "-1, System.ArgumentException", "Invalid expirationDateTime.") from None
    now = sim.now()
    if expiry <= now or expiry > now + MAX_LIFETIME:
        raise SharePointError(
            400, "-1, System.ArgumentException", "The expiration date must be within 180 days from now."
        )
    return expiry


async def _create_subscription(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    body = await _body(request)
    url = body.get("notificationUrl")
    if not isinstance(url, str) or not url:
        raise SharePointError(400, "-1, System.ArgumentException", "notificationUrl is required.")
    expiry = _expiry(sim, body.get("expirationDateTime"))
    if not await sim.handshake(url):
        raise SharePointError(400, "-1, System.InvalidOperationException", "Failed to validate the notification URL.")
    state = body.get("clientState")
    sub = SPSubscription(str(uuid.uuid4()), target.id, url, state if isinstance(state, str) else None, expiry)
    target.subs[sub.id] = sub
    return web.json_response(sub.to_json(), status=201)


async def _get_changes(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    sim.stats.get_changes += 1
    body = await _body(request)
    query = body.get("query")
    if not isinstance(query, dict):
        raise SharePointError(400, "-1, System.ArgumentException", "query is required.")
    start = query.get("ChangeTokenStart")
    text = start.get("StringValue") if isinstance(start, dict) else None
    number = _token_number(text, target) if text else target.log_start
    if number < target.log_start:
        # SharePoint answers this SPException with an undocumented status; 500 here.
        raise SharePointError(500, EXPIRED_CODE, EXPIRED_TEXT)
    limit = query.get("FetchLimit")
    limit = limit if isinstance(limit, int) and limit > 0 else 1000
    wanted = {1: "Add", 2: "Update", 3: "DeleteObject"}
    rows = [
        c for c in target.log if c.number > number and (c.change_type not in wanted or query.get(wanted[c.change_type]))
    ][:limit]
    return web.json_response({"value": [_change_json(sim, target, c) for c in rows]})


def _token_number(text: str, target: SPList) -> int:
    parts = text.split(";")
    if len(parts) != 5 or parts[2].lower() != target.id or not parts[4].isdigit():
        raise SharePointError(400, "-1, System.ArgumentException", "Invalid change token.")
    return int(parts[4])


def _change_json(sim: SharePointSim, target: SPList, change: Change) -> dict[str, Any]:
    return {
        "ChangeToken": {"StringValue": target.token(change.number, change.time)},
        "ChangeType": change.change_type,
        "SiteId": sim.sites[target.site],
        "Time": item_time(change.time),
        "ItemId": change.item_id,
        "ListId": target.id,
        "UniqueId": change.unique_id,
        "WebId": sim.sites[target.site],
    }


def _items(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    top_text = request.query.get("$top", "100")
    top = int(top_text) if top_text.isdigit() and int(top_text) > 0 else 100
    skip = request.query.get("$skiptoken", "")
    after = int(skip.rsplit("=", 1)[1]) if skip.startswith("Paged=TRUE&p_ID=") and skip[16:].isdigit() else 0
    ids = sorted(i for i in target.items if i > after)
    page = ids[:top]
    body: dict[str, Any] = {"value": [target.items[i].to_json() for i in page]}
    if len(ids) > top:
        select = quote(request.query.get("$select", "*"), safe="*,")
        skiptoken = quote(f"Paged=TRUE&p_ID={page[-1]}", safe="")
        body["odata.nextLink"] = (
            f"{sim.base_url}/sites/{target.site}/_api/web/lists('{target.id}')/items"
            f"?%24skiptoken={skiptoken}&%24select={select}&%24top={top}"
        )
    return web.json_response(body)
