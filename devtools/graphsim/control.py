"""The control API under ``/_sim``: seed drives and items, inspect, inject faults, steer time.

JSON in, JSON out, no authentication (loopback only).  Unlike Graph, this API returns
``clientState`` of subscriptions so tests can assert on it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .drives import Drive, Item
from .render import drive_json, item_json
from .state import STATE, SimState

routes = web.RouteTableDef()
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
    return data


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def _drive(request: web.Request) -> Drive:
    drive = _state(request).drives.drives.get(request.match_info["d"])
    if drive is None:
        raise web.HTTPNotFound(text='{"error": "no such drive"}', content_type="application/json")
    return drive


def _item(request: web.Request, drive: Drive) -> Item:
    item = _state(request).drives.item(drive, request.match_info["i"])
    if item is None:
        raise web.HTTPNotFound(text='{"error": "no such item"}', content_type="application/json")
    return item


def _item_out(state: SimState, drive: Drive, item: Item) -> dict[str, Any]:
    return item_json(state.drives, drive, item)


@routes.post("/_sim/drives")
async def create_drive(request: web.Request) -> web.Response:
    """Create a drive: {"id"?, "userId"?, "siteId"?} -> drive JSON plus rootId."""
    state, body = _state(request), await _json(request)
    try:
        drive = state.drives.create_drive(body.get("id"), body.get("userId"), body.get("siteId"))
    except ValueError as exc:
        return _err(409, str(exc))
    return web.json_response(
        {
            **drive_json(drive, state.graph_url),
            "rootId": drive.root_id,
            "userId": drive.user_id,
            "siteId": drive.site_id,
        },
        status=201,
    )


@routes.get("/_sim/drives")
async def list_drives(request: web.Request) -> web.Response:
    """All drives with sequence and counters."""
    state = _state(request)
    return web.json_response(
        {
            "value": [
                {
                    "id": d.id,
                    "rootId": d.root_id,
                    "userId": d.user_id,
                    "siteId": d.site_id,
                    "seq": d.seq,
                    "items": sum(1 for i in d.items.values() if not i.deleted),
                }
                for d in state.drives.drives.values()
            ]
        }
    )


@routes.post("/_sim/drives/{d}/items")
async def create_item(request: web.Request) -> web.Response:
    """Create a file or folder: {"name", "parentId"?, "folder"?, "content"?}."""
    state, drive, body = _state(request), _drive(request), await _json(request)
    if not body.get("name"):
        return _err(400, "name is required")
    try:
        item = state.drives.add_item(
            drive, str(body["name"]), body.get("parentId"), bool(body.get("folder")), body.get("content") or ""
        )
    except KeyError:
        return _err(404, "parent folder not found")
    return web.json_response(_item_out(state, drive, item), status=201)


@routes.post("/_sim/drives/{d}/items:bulk")
async def create_bulk(request: web.Request) -> web.Response:
    """Create N files at once: {"count", "prefix"?, "parentId"?} -> {"ids": [...]}."""
    state, drive, body = _state(request), _drive(request), await _json(request)
    count, prefix = int(body.get("count", 0)), str(body.get("prefix", "file"))
    ids = []
    try:
        for n in range(count):
            item = state.drives.add_item(
                drive, f"{prefix}-{n:06d}.txt", body.get("parentId"), content=f"{prefix} {n}", notify=False
            )
            ids.append(item.id)
    except KeyError:
        return _err(404, "parent folder not found")
    state.on_drive_change(drive, len(ids))
    return web.json_response({"count": len(ids), "ids": ids, "seq": drive.seq}, status=201)


@routes.get("/_sim/drives/{d}/items/{i}")
async def get_item(request: web.Request) -> web.Response:
    """An item as Graph would return it."""
    state, drive = _state(request), _drive(request)
    return web.json_response(_item_out(state, drive, _item(request, drive)))


@routes.patch("/_sim/drives/{d}/items/{i}")
async def update_item(request: web.Request) -> web.Response:
    """Rename and/or change content: {"name"?, "content"?}."""
    state, drive, body = _state(request), _drive(request), await _json(request)
    item = _item(request, drive)
    state.drives.update_item(drive, item, body.get("name"), body.get("content"))
    return web.json_response(_item_out(state, drive, item))


@routes.delete("/_sim/drives/{d}/items/{i}")
async def delete_item(request: web.Request) -> web.Response:
    """Delete an item (and, for a folder, its contents) -> {"deleted": n}."""
    state, drive = _state(request), _drive(request)
    try:
        n = state.drives.delete_item(drive, _item(request, drive))
    except ValueError as exc:
        return _err(400, str(exc))
    return web.json_response({"deleted": n})


@routes.post("/_sim/drives/{d}/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Make every delta token issued so far for this drive answer 410."""
    drive = _drive(request)
    drive.token_epoch += 1
    return web.json_response({"driveId": drive.id, "epoch": drive.token_epoch})
