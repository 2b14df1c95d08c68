"""The control API of SharePoint (``/_sim/sharepoint``): sites, lists, items, subscriptions, delivery, stats.

Unlike the other control routes, these answer a missing list or item in plain text.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web

from ..assertions import certificates_for
from ..models.sharepoint import SharePointSim, SPItem, SPList, SPSubscription
from ..state import SimState
from .control_api import ItemRoutes, state_of

routes = web.RouteTableDef()


def _sharepoint(request: web.Request) -> SharePointSim:
    """The selected tenant's SharePoint (``?tenant=``, default the home tenant's); learns its base URL."""
    sim = state_of(request).sharepoint
    if not sim.base_url:
        sim.base_url = f"{request.scheme}://{request.host}"
    return sim


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    return body if isinstance(body, dict) else {}


@routes.post("/_sim/sharepoint/sites")
async def create_site(request: web.Request) -> web.Response:
    """A site: {"name"} -> {"url", "webId"}."""
    sim = _sharepoint(request)
    name = str((await _body(request)).get("name") or f"site{len(sim.sites) + 1}")
    sim.sites.setdefault(name, str(uuid.uuid4()))
    return web.json_response({"url": f"{sim.base_url}/sites/{name}", "webId": sim.sites[name]})


@routes.post("/_sim/sharepoint/lists")
async def create_list(request: web.Request) -> web.Response:
    """A list on a site: {"site", "id"?} -> {"id"}."""
    sim = _sharepoint(request)
    body = await _body(request)
    site = str(body.get("site") or "")
    if site not in sim.sites:
        return web.json_response({"error": f"no site {site!r}"}, status=404)
    list_id = str(uuid.UUID(str(body.get("id") or uuid.uuid4())))
    sim.lists.setdefault(list_id, SPList(list_id, site))
    return web.json_response({"id": list_id})


class ListItems(ItemRoutes[SPList, SPItem]):
    """A list's items: {"fields": {...}} adds or changes one; a delete goes to the recycle bin."""

    container_noun = "list"
    restore_noun = "recycled item"
    created_status = 200

    def container(self, request: web.Request) -> SPList | None:
        return _sharepoint(request).lists.get(request.match_info["list"].lower())

    def item(self, where: SPList, key: str) -> SPItem | None:
        return where.items.get(int(key))

    def deleted_item(self, where: SPList, key: str) -> SPItem | None:
        return where.recycled.get(int(key))

    def missing(self, what: str) -> web.HTTPException:
        return web.HTTPNotFound(text=f"no such {what}")

    async def body(self, request: web.Request) -> dict[str, Any]:
        return await _body(request)

    def create(self, state: SimState, where: SPList, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        return state.sharepoint.add_item(where, body.get("fields") or {}).to_json()

    def update(self, state: SimState, where: SPList, item: SPItem, body: dict[str, Any]) -> Any:
        state.sharepoint.update_item(where, item, body.get("fields") or {})
        return item.to_json()

    def delete(self, state: SimState, where: SPList, item: SPItem) -> Any:
        state.sharepoint.delete_item(where, item)
        return {"ok": True}

    def restore(self, state: SimState, where: SPList, item: SPItem) -> Any:
        state.sharepoint.restore_item(where, item)
        return item.to_json()

    def expire(self, where: SPList) -> Any:
        """Trim the change log: every token issued so far is now older than its start."""
        where.log_start = where.number + 1
        where.log = []
        return {"ok": True}


LIST_ITEMS = ListItems()
LIST_ITEMS.add_to(routes, "/_sim/sharepoint/lists/{list}", create="/items", item="/items/{item}")


@routes.post("/_sim/sharepoint/lists/{list}/quiet")
async def quiet_change(request: web.Request) -> web.Response:
    """Delete an item without notifying (a lost notification), to be found by a resync."""
    target = LIST_ITEMS.where(request)
    body = await _body(request)
    target.items.pop(int(body.get("item") or 0), None)
    return web.json_response({"ok": True})


@routes.get("/_sim/sharepoint/subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    """Every list's subscriptions, with their list id."""
    sim = _sharepoint(request)
    for target in sim.lists.values():
        sim.expire(target)
    return web.json_response([{**s.to_json(), "listId": t.id} for t in sim.lists.values() for s in t.subs.values()])


@routes.delete("/_sim/sharepoint/subscriptions/{sub}")
async def drop_subscription(request: web.Request) -> web.Response:
    """Lose a subscription, as SharePoint may."""
    sim = _sharepoint(request)
    for target in sim.lists.values():
        if target.subs.pop(request.match_info["sub"], None) is not None:
            return web.json_response({"ok": True})
    raise web.HTTPNotFound(text="no such subscription")


@routes.post("/_sim/sharepoint/lists/{list}/subscriptions")
async def add_subscription(request: web.Request) -> web.Response:
    """A subscription made by someone else (no handshake): {"notificationUrl", "clientState"?}."""
    sim, target = _sharepoint(request), LIST_ITEMS.where(request)
    body = await _body(request)
    client_state = body.get("clientState")
    sub = SPSubscription(
        str(uuid.uuid4()),
        target.id,
        str(body.get("notificationUrl") or ""),
        client_state if isinstance(client_state, str) else None,
        sim.now() + timedelta(days=30),
    )
    target.subs[sub.id] = sub
    return web.json_response(sub.to_json())


@routes.post("/_sim/sharepoint/certificates")
async def register_certificate(request: web.Request) -> web.Response:
    """Register the app's public certificate: {"pem"} -> {"thumbprint"} (base64url SHA-1)."""
    pem = str((await _body(request)).get("pem") or "")
    return web.json_response({"thumbprint": certificates_for(state_of(request).issuer).add(pem)})


@routes.post("/_sim/sharepoint/delivery")
async def delivery(request: web.Request) -> web.Response:
    """Delivery options: {"retries", "retrySeconds", "handshakeSeconds"}."""
    sim = _sharepoint(request)
    body = await _body(request)
    sim.retries = int(body.get("retries", sim.retries))
    sim.retry_seconds = float(body.get("retrySeconds", sim.retry_seconds))
    sim.handshake_seconds = float(body.get("handshakeSeconds", sim.handshake_seconds))
    return web.json_response({"ok": True})


@routes.get("/_sim/sharepoint/stats")
async def stats(request: web.Request) -> web.Response:
    """Counters: handshakes, deliveries, failures, drops, token grants, REST requests."""
    sim = _sharepoint(request)
    s = sim.stats
    return web.json_response(
        {
            "handshakes": s.handshakes,
            "deliveries": s.deliveries,
            "deliveredItems": s.delivered_items,
            "failures": s.failures,
            "dropped": s.dropped,
            "requests": s.requests,
            "authFailures": s.auth_failures,
            "getChanges": s.get_changes,
            "itemReads": s.item_reads,
            "pending": len(sim._pending),
        }
    )
