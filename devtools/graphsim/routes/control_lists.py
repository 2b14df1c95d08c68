"""The control API of Graph's SharePoint lists: create lists and items, change and delete them, expire tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..models.lists import ListItem, SpList, item_json
from ..state import SimState
from .control_api import ItemRoutes, created, if_deleted, if_live, read_json, state_of

routes = web.RouteTableDef()


@routes.post("/_sim/sites/{site}/lists")
async def create_list(request: web.Request) -> web.Response:
    """Create a list: {"id"?, "name"?} -> {"id", "siteId", "name", "resource"}."""
    state, body = state_of(request), await read_json(request)
    site = request.match_info["site"]
    lst = created(lambda: state.lists.create_list(site, body.get("id"), str(body.get("name") or "List")))
    return web.json_response(
        {"id": lst.id, "siteId": lst.site_id, "name": lst.name, "resource": f"sites/{site}/lists/{lst.id}"}, status=201
    )


class ListItems(ItemRoutes[SpList, ListItem]):
    """List items: {"fields": {...}} creates or changes one; each answers the item with its fields."""

    container_noun = "list"

    def container(self, request: web.Request) -> SpList | None:
        return state_of(request).lists.find(request.match_info["site"], request.match_info["list"])

    def item(self, where: SpList, key: str) -> ListItem | None:
        return if_live(where.items.get(key))

    def deleted_item(self, where: SpList, key: str) -> ListItem | None:
        return if_deleted(where.items.get(key))

    def create(self, state: SimState, where: SpList, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        item = state.lists.add_item(where, dict(body.get("fields") or {}))
        return item_json(where, item, state.graph_url, True)

    def update(self, state: SimState, where: SpList, item: ListItem, body: dict[str, Any]) -> Any:
        state.lists.update_item(where, item, dict(body.get("fields") or {}))
        return item_json(where, item, state.graph_url, True)

    def delete(self, state: SimState, where: SpList, item: ListItem) -> Any:
        state.lists.delete_item(where, item)
        return {"deleted": 1}

    def restore(self, state: SimState, where: SpList, item: ListItem) -> Any:
        """The recycle bin's restore."""
        state.lists.restore_item(where, item)
        return item_json(where, item, state.graph_url, True)

    def expire(self, where: SpList) -> Any:
        where.epoch += 1
        return {"listId": where.id, "epoch": where.epoch}


ListItems().add_to(routes, "/_sim/sites/{site}/lists/{list}", create="/items", item="/items/{item}")
