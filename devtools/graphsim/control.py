"""The control API under ``/_sim``: seed drives and items, inspect, inject faults, steer time.

JSON in, JSON out, no authentication (loopback only).  Unlike Graph, this API returns
``clientState`` of subscriptions so tests can assert on it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from .clock import parse_time
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
                    "items": d.live,
                }
                for d in state.drives.drives.values()
            ]
        }
    )


def _time(body: dict[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        return parse_time(str(value))
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{key} is not an ISO 8601 time"}), content_type="application/json"
        ) from exc


@routes.post("/_sim/drives/{d}/items")
async def create_item(request: web.Request) -> web.Response:
    """Create a file or folder: {"name", "parentId"?, "folder"?, "content"?, "createdDateTime"?, ...}.

    ``createdDateTime`` and ``lastModifiedDateTime`` (ISO 8601) stand for a file moved in
    or migrated with its original times.
    """
    state, drive, body = _state(request), _drive(request), await _json(request)
    if not body.get("name"):
        return _err(400, "name is required")
    created, modified = _time(body, "createdDateTime"), _time(body, "lastModifiedDateTime")
    try:
        item = state.drives.add_item(
            drive,
            str(body["name"]),
            body.get("parentId"),
            bool(body.get("folder")),
            body.get("content") or "",
            created=created,
            modified=modified,
        )
    except KeyError:
        return _err(404, "parent folder not found")
    return web.json_response(_item_out(state, drive, item), status=201)


@routes.post("/_sim/drives/{d}/items:generate")
async def generate_items(request: web.Request) -> web.Response:
    """Create a large drive fast: {"count", "folders"?, "prefix"?, "sizeBytes"?, "notify"?: false}.

    ``count`` files spread over ``folders`` new folders under the root (default
    max(1, count // 1000); 0 puts them in the root), as one change.  Answers
    {"count", "folders", "seq", "sampleIds", "folderIds"} (at most 10 of each).
    """
    state, drive, body = _state(request), _drive(request), await _json(request)
    try:
        count = int(body.get("count", 0))
        folders = body.get("folders")
        folders = max(1, count // 1000) if folders is None else int(folders)
        size = int(body.get("sizeBytes", 0))
        folder_ids, sample = state.drives.generate(drive, count, folders, str(body.get("prefix", "gen")), size)
    except (TypeError, ValueError) as exc:
        return _err(400, str(exc))
    if body.get("notify"):
        state.on_drive_change(drive, count + folders)
    return web.json_response(
        {"count": count, "folders": folders, "seq": drive.seq, "sampleIds": sample, "folderIds": folder_ids[:10]},
        status=201,
    )


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
    """Rename, change content and/or move: {"name"?, "content"?, "parentId"?} (one change)."""
    state, drive, body = _state(request), _drive(request), await _json(request)
    item = _item(request, drive)
    parent_id = body.get("parentId")
    try:
        state.drives.update_item(
            drive, item, body.get("name"), body.get("content"), None if parent_id is None else str(parent_id)
        )
    except KeyError:
        return _err(404, "parent folder not found")
    except ValueError as exc:
        return _err(400, str(exc))
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


@routes.post("/_sim/drives/{d}/items/{i}/restore")
async def restore_item(request: web.Request) -> web.Response:
    """Restore a deleted item (with what its deletion took) -> the item plus {"restored": n}.

    Control API only: Graph documents ``POST .../items/{id}/restore`` for OneDrive
    Personal alone, and this simulator is OneDrive for Business.
    """
    state, drive = _state(request), _drive(request)
    item = state.drives.render_source(drive, request.match_info["i"])
    if item is None:
        return _err(404, "no such item")
    try:
        n = state.drives.restore_item(drive, item)
    except (ValueError, LookupError) as exc:
        return _err(409, str(exc))
    return web.json_response({**_item_out(state, drive, item), "restored": n})


@routes.post("/_sim/drives/{d}/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Make every delta token issued so far for this drive answer 410."""
    drive = _drive(request)
    drive.token_epoch += 1
    return web.json_response({"driveId": drive.id, "epoch": drive.token_epoch})
