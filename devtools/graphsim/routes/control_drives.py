"""The control API of drives: create drives, seed and generate items, change, delete and restore them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from ..clock import parse_time
from ..models.drives import Drive, Item
from ..state import SimState
from .control_api import ControlError, ItemRoutes, created, read_json, state_of
from .render import drive_json, item_json

routes = web.RouteTableDef()


@routes.post("/_sim/drives")
async def create_drive(request: web.Request) -> web.Response:
    """Create a drive: {"id"?, "userId"?, "siteId"?} -> drive JSON plus rootId."""
    state, body = state_of(request), await read_json(request)
    drive = created(lambda: state.drives.create_drive(body.get("id"), body.get("userId"), body.get("siteId")))
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
    state = state_of(request)
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
    except ValueError:
        raise ControlError(400, f"{key} is not an ISO 8601 time") from None


class DriveItems(ItemRoutes[Drive, Item]):
    """Files and folders: each answers the driveItem as Graph returns it."""

    container_noun = "drive"
    item_key = "i"
    restore_noun = "item"

    def container(self, request: web.Request) -> Drive | None:
        return state_of(request).drives.drives.get(request.match_info["d"])

    def item(self, where: Drive, key: str) -> Item | None:
        return where.live_item(key)

    def deleted_item(self, where: Drive, key: str) -> Item | None:
        return where.items.get(key)  # tombstones too: a live one is refused (409)

    def create(self, state: SimState, where: Drive, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        """{"name", "parentId"?, "folder"?, "content"?, "createdDateTime"?, "lastModifiedDateTime"?}.

        The two times (ISO 8601) stand for a file moved in or migrated with its original times.
        """
        if not body.get("name"):
            raise ControlError(400, "name is required")
        created, modified = _time(body, "createdDateTime"), _time(body, "lastModifiedDateTime")
        try:
            item = state.drives.add_item(
                where,
                str(body["name"]),
                body.get("parentId"),
                bool(body.get("folder")),
                body.get("content") or "",
                created=created,
                modified=modified,
            )
        except KeyError:
            raise ControlError(404, "parent folder not found") from None
        return item_json(state.drives, where, item)

    def update(self, state: SimState, where: Drive, item: Item, body: dict[str, Any]) -> Any:
        """Rename, change content and/or move: {"name"?, "content"?, "parentId"?} (one change)."""
        parent_id = body.get("parentId")
        try:
            state.drives.update_item(
                where, item, body.get("name"), body.get("content"), None if parent_id is None else str(parent_id)
            )
        except KeyError:
            raise ControlError(404, "parent folder not found") from None
        except ValueError as exc:
            raise ControlError(400, str(exc)) from None
        return item_json(state.drives, where, item)

    def delete(self, state: SimState, where: Drive, item: Item) -> Any:
        """An item and, for a folder, its contents -> {"deleted": n}."""
        try:
            return {"deleted": state.drives.delete_item(where, item)}
        except ValueError as exc:
            raise ControlError(400, str(exc)) from None

    def restore(self, state: SimState, where: Drive, item: Item) -> Any:
        """An item with what its deletion took -> the item plus {"restored": n}.

        Control API only: Graph documents ``POST .../items/{id}/restore`` for OneDrive
        Personal alone, and this simulator is OneDrive for Business.
        """
        try:
            restored = state.drives.restore_item(where, item)
        except (ValueError, LookupError) as exc:
            raise ControlError(409, str(exc)) from None
        return {**item_json(state.drives, where, item), "restored": restored}

    def expire(self, where: Drive) -> Any:
        where.token_epoch += 1
        return {"driveId": where.id, "epoch": where.token_epoch}


DRIVE_ITEMS = DriveItems()
DRIVE_ITEMS.add_to(routes, "/_sim/drives/{d}", create="/items", item="/items/{i}")


@routes.post("/_sim/drives/{d}/items:generate")
async def generate_items(request: web.Request) -> web.Response:
    """Create a large drive fast: {"count", "folders"?, "prefix"?, "sizeBytes"?, "notify"?: false}.

    ``count`` files spread over ``folders`` new folders under the root (default
    max(1, count // 1000); 0 puts them in the root), as one change.  Answers
    {"count", "folders", "seq", "sampleIds", "folderIds"} (at most 10 of each).
    """
    state, drive, body = state_of(request), DRIVE_ITEMS.where(request), await read_json(request)
    try:
        count = int(body.get("count", 0))
        folders = body.get("folders")
        folders = max(1, count // 1000) if folders is None else int(folders)
        size = int(body.get("sizeBytes", 0))
        folder_ids, sample = state.drives.generate(drive, count, folders, str(body.get("prefix", "gen")), size)
    except (TypeError, ValueError) as exc:
        return ControlError(400, str(exc)).response()
    if body.get("notify"):
        state.on_drive_change(drive, count + folders)
    return web.json_response(
        {"count": count, "folders": folders, "seq": drive.seq, "sampleIds": sample, "folderIds": folder_ids[:10]},
        status=201,
    )


@routes.post("/_sim/drives/{d}/items:bulk")
async def create_bulk(request: web.Request) -> web.Response:
    """Create N files at once: {"count", "prefix"?, "parentId"?} -> {"ids": [...]}."""
    state, drive, body = state_of(request), DRIVE_ITEMS.where(request), await read_json(request)
    count, prefix = int(body.get("count", 0)), str(body.get("prefix", "file"))
    ids = []
    try:
        for n in range(count):
            item = state.drives.add_item(
                drive, f"{prefix}-{n:06d}.txt", body.get("parentId"), content=f"{prefix} {n}", notify=False
            )
            ids.append(item.id)
    except KeyError:
        return ControlError(404, "parent folder not found").response()
    state.on_drive_change(drive, len(ids))
    return web.json_response({"count": len(ids), "ids": ids, "seq": drive.seq}, status=201)


@routes.get("/_sim/drives/{d}/items/{i}")
async def get_item(request: web.Request) -> web.Response:
    """An item as Graph would return it."""
    drive = DRIVE_ITEMS.where(request)
    return web.json_response(item_json(state_of(request).drives, drive, DRIVE_ITEMS.live(request, drive)))
