"""The control API of Teams: create teams, channels and chats; post, edit, delete and undelete messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..models.teams import Conversation
from ..state import SimState
from .control_api import ItemRoutes, created, state_of

routes = web.RouteTableDef()
Message = dict[str, Any]


async def _body(request: web.Request) -> dict[str, Any]:
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "a JSON object is expected"}', content_type="application/json")
    return body


@routes.post("/_sim/teams")
async def create_team(request: web.Request) -> web.Response:
    """``{"id"?, "channels": [names] or {name: id}}`` -> ``{"id", "channels": {name: id}}``."""
    store, body = state_of(request).teams, await _body(request)
    team = created(lambda: store.add_team(body.get("id")))
    wanted = body.get("channels") or ["General"]
    named = wanted if isinstance(wanted, dict) else dict.fromkeys(wanted)
    channels = {name: store.add_channel(team, name, channel_id).id for name, channel_id in named.items()}
    return web.json_response({"id": team, "channels": channels}, status=201)


@routes.post("/_sim/chats")
async def create_chat(request: web.Request) -> web.Response:
    """``{"id"?}`` -> ``{"id"}``."""
    store, body = state_of(request).teams, await _body(request)
    chat = created(lambda: store.add_chat(body.get("id")))
    return web.json_response({"id": chat.id}, status=201)


class Messages(ItemRoutes[Conversation, Message]):
    """A channel's or a chat's messages: each answers the chatMessage; a delete is a soft delete (204)."""

    item_key = "m"
    item_noun = "message"
    restore_noun = "deleted message"

    def __init__(self, container_noun: str) -> None:
        self.container_noun = container_noun

    def container(self, request: web.Request) -> Conversation | None:
        store, info = state_of(request).teams, request.match_info
        return store.channel(info["t"], info["c"]) if "t" in info else store.chats.get(info["chat"])

    def item(self, where: Conversation, key: str) -> Message | None:
        found = where.messages.get(key)
        return found if found is not None and found["deletedDateTime"] is None else None

    def deleted_item(self, where: Conversation, key: str) -> Message | None:
        found = where.messages.get(key)
        return found if found is not None and found["deletedDateTime"] is not None else None

    async def body(self, request: web.Request) -> dict[str, Any]:
        return await _body(request)

    def create(self, state: SimState, where: Conversation, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        """``{"content", "contentType"?}``."""
        return state.teams.post(where, str(body.get("content", "")), str(body.get("contentType", "text")))

    def update(self, state: SimState, where: Conversation, item: Message, body: dict[str, Any]) -> Any:
        """``{"content"}``."""
        return state.teams.edit(where, item["id"], str(body.get("content", "")))

    def delete(self, state: SimState, where: Conversation, item: Message) -> Any:
        state.teams.delete(where, item["id"])
        return None

    def restore(self, state: SimState, where: Conversation, item: Message) -> Any:
        return state.teams.undelete(where, item["id"])


Messages("channel").add_to(
    routes,
    "/_sim/teams/{t}/channels/{c}",
    create="/messages",
    item="/messages/{m}",
    restore="/undoSoftDelete",
    expire=None,
)
Messages("chat").add_to(
    routes, "/_sim/chats/{chat}", create="/messages", item="/messages/{m}", restore="/undoSoftDelete", expire=None
)
