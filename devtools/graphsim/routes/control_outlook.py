"""The control API of Outlook mailboxes: folders, messages, events and contacts, their changes, expired tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..clock import graph_time, parse_time
from ..models.outlook import Item, Mailbox, render
from ..state import SimState
from .control_api import ControlError, ItemRoutes, created, if_deleted, if_live, read_json, state_of

routes = web.RouteTableDef()
MAILBOX = "/_sim/outlook/mailboxes/{u}"


@routes.post("/_sim/outlook/mailboxes")
async def create_mailbox(request: web.Request) -> web.Response:
    """Create a mailbox: {"userId"?} -> {"userId", "mailFolders": {wellKnownName: id}, "contactsFolderId"}."""
    state, body = state_of(request), await read_json(request)
    box = created(lambda: state.outlook.create_mailbox(body.get("userId")))
    folders = {f.well_known: f.id for f in box.mail.values() if f.well_known}
    return web.json_response(
        {"userId": box.user, "mailFolders": folders, "contactsFolderId": box.default_contacts}, status=201
    )


@routes.post(MAILBOX + "/{kind:mailFolders|contactFolders}")
async def create_folder(request: web.Request) -> web.Response:
    """Create a folder: {"displayName", "parentFolderId"?} -> {"id", "displayName", "parentFolderId"}."""
    state, box, body = state_of(request), MAILBOX_ITEMS.where(request), await read_json(request)
    kind = "mail" if request.match_info["kind"] == "mailFolders" else "contacts"
    try:
        folder = state.outlook.add_folder(
            box, kind, str(body.get("displayName") or "Folder"), body.get("parentFolderId")
        )
    except KeyError:
        return ControlError(404, "parent folder not found").response()
    return web.json_response({"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent}, status=201)


class MailboxItems(ItemRoutes[Mailbox, Item]):
    """Messages, events and contacts; each answers the item as Graph renders it."""

    container_noun = "mailbox"
    item_key = "i"

    def container(self, request: web.Request) -> Mailbox | None:
        return state_of(request).outlook.mailbox(request.match_info["u"])

    def item(self, where: Mailbox, key: str) -> Item | None:
        return if_live(where.items.get(key))

    def deleted_item(self, where: Mailbox, key: str) -> Item | None:
        return if_deleted(where.items.get(key))

    def create(self, state: SimState, where: Mailbox, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        """A message ({"folderId"?: inbox, ...}), event ({"start", "end", ...}) or contact ({"folderId"?, ...})."""
        kind = info["kind"][:-1]
        props = {k: v for k, v in body.items() if k not in ("folderId", "start", "end")}
        folder = ""
        if kind == "event":
            try:
                start, end = parse_time(str(body["start"])), parse_time(str(body["end"]))
            except (KeyError, ValueError):
                raise ControlError(400, "start and end (ISO 8601) are required") from None
            props |= {"start": {"dateTime": graph_time(start), "timeZone": "UTC"}}
            props |= {"end": {"dateTime": graph_time(end), "timeZone": "UTC"}}
        else:
            folder_kind = "mail" if kind == "message" else "contacts"
            default = "inbox" if kind == "message" else "contacts"
            found = where.folder_id(folder_kind, str(body.get("folderId") or default))
            if found is None:
                raise ControlError(404, "folder not found")
            folder = found
        return render(where, state.outlook.add_item(where, kind, folder, props))

    def update(self, state: SimState, where: Mailbox, item: Item, body: dict[str, Any]) -> Any:
        """{"subject"?, "start"?, "end"?, ...}: one change."""
        props = dict(body)
        for edge in ("start", "end"):
            if edge in props and isinstance(props[edge], str):
                props[edge] = {"dateTime": graph_time(parse_time(props[edge])), "timeZone": "UTC"}
        state.outlook.update_item(where, item, props)
        return render(where, item)

    def delete(self, state: SimState, where: Mailbox, item: Item) -> Any:
        state.outlook.delete_item(where, item)
        return {"deleted": 1}

    def restore(self, state: SimState, where: Mailbox, item: Item) -> Any:
        state.outlook.restore_item(where, item)
        return render(where, item)

    def expire(self, where: Mailbox) -> Any:
        where.epoch += 1
        return {"userId": where.user, "epoch": where.epoch}


MAILBOX_ITEMS = MailboxItems()
MAILBOX_ITEMS.add_to(routes, MAILBOX, create="/{kind:messages|events|contacts}", item="/items/{i}")


@routes.post(MAILBOX + "/items/{i}/move")
async def move_item(request: web.Request) -> web.Response:
    """Move a message or contact to another folder of its kind: {"folderId"}."""
    state, box, body = state_of(request), MAILBOX_ITEMS.where(request), await read_json(request)
    item = MAILBOX_ITEMS.live(request, box)
    folder = box.folder_id("mail" if item.kind == "message" else "contacts", str(body.get("folderId") or ""))
    if folder is None or item.kind == "event":
        return ControlError(404, "folder not found").response()
    state.outlook.move_item(box, item, folder)
    return web.json_response(render(box, item))


@routes.get(MAILBOX)
async def mailbox_stats(request: web.Request) -> web.Response:
    """A mailbox's folders, live item count and delta request count."""
    box = MAILBOX_ITEMS.where(request)
    return web.json_response(
        {
            "userId": box.user,
            "mailFolders": [
                {"id": f.id, "parentFolderId": f.parent, "wellKnownName": f.well_known} for f in box.mail.values()
            ],
            "items": sum(1 for i in box.items.values() if not i.deleted),
            "deltaRequests": box.delta_requests,
        }
    )
