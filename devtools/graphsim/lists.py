"""SharePoint lists and list items, with listItem delta (``token=latest``, 410) and notifications.

Follows listitem-delta: the first call enumerates the list, ``?token=latest``
returns no items and the current deltaLink, a deltaLink returns the items changed
since (deleted ones with a ``deleted`` facet), and a stale token answers 410 with a
``Location`` that starts a fresh enumeration. ``$expand=fields`` adds each item's
column values. Subscriptions on ``sites/{site-id}/lists/{list-id}`` accept only
``updated`` and get notifications without resource data, as Graph sends for lists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .clock import SimClock, item_time
from .errors import GraphError, json_response
from .subscriptions import RESOURCE_RULES, ResourceRule

if TYPE_CHECKING:
    from .state import SimState

LIST_MAX_MINUTES = 42300
RESYNC_MESSAGE = "Resync required. Replace any local items with the server's version (including deletes)."
# A change listener gets the subscription resource and (changeType, extra notification fields) pairs.
Listener = Callable[[str, list[tuple[str, dict[str, Any]]]], None]


def encode_token(data: dict[str, Any]) -> str:
    """An opaque URL-safe token for a delta position or page."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(text: str) -> dict[str, Any] | None:
    """A token's content, or None when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class ListItem:
    """One list item, live or tombstoned."""

    id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    version: int = 1
    seq: int = 0
    deleted: bool = False


@dataclass
class SpList:
    """One SharePoint list with its change sequence and token epoch."""

    site_id: str
    id: str
    name: str
    items: dict[str, ListItem] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0
    next_id: int = 1
    delta_runs: int = 0

    @property
    def resource(self) -> str:
        """The subscription resource for this list (lower case, for matching)."""
        return f"sites/{self.site_id}/lists/{self.id}".lower()


class ListStore:
    """Every simulated list, keyed by (site id, list id), case-insensitively."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.lists: dict[tuple[str, str], SpList] = {}
        self.listeners: list[Listener] = []

    def find(self, site_id: str, list_id: str) -> SpList | None:
        """A list by its site and list ids."""
        return self.lists.get((site_id.lower(), list_id.lower()))

    def create_list(self, site_id: str, list_id: str | None, name: str) -> SpList:
        """A new, empty list."""
        lst = SpList(site_id, list_id or str(uuid.uuid4()), name)
        if (site_id.lower(), lst.id.lower()) in self.lists:
            raise ValueError(f"list {lst.id} exists")
        self.lists[(site_id.lower(), lst.id.lower())] = lst
        return lst

    def _stamp(self, lst: SpList, item: ListItem) -> None:
        lst.seq += 1
        item.seq = lst.seq
        # Kept in sequence order, so the changes since a token are a walk back from the end.
        lst.items.pop(item.id, None)
        lst.items[item.id] = item
        for listener in self.listeners:
            listener(lst.resource, [("updated", {})])

    def add_item(self, lst: SpList, fields: dict[str, Any]) -> ListItem:
        """A new item with these column values (``Title`` and the like)."""
        now = self.clock.now()
        item = ListItem(str(lst.next_id), dict(fields), now, now)
        lst.next_id += 1
        self._stamp(lst, item)
        return item

    def update_item(self, lst: SpList, item: ListItem, fields: dict[str, Any]) -> None:
        """Change some column values: a new version."""
        item.fields.update(fields)
        item.version += 1
        item.modified = self.clock.now()
        self._stamp(lst, item)

    def delete_item(self, lst: SpList, item: ListItem) -> None:
        """Delete an item; delta reports it with a ``deleted`` facet."""
        item.deleted = True
        self._stamp(lst, item)

    def restore_item(self, lst: SpList, item: ListItem) -> None:
        """Bring a deleted item back from the recycle bin, under its id: a new version."""
        item.deleted = False
        item.version += 1
        item.modified = self.clock.now()
        self._stamp(lst, item)


def item_json(lst: SpList, item: ListItem, graph_url: str, fields: bool) -> dict[str, Any]:
    """A listItem as Graph renders it (``fields`` when expanded)."""
    guid = str(uuid.UUID(bytes=hashlib.blake2b(f"{lst.id}/{item.id}".encode(), digest_size=16).digest())).upper()
    parent = {"id": lst.id, "siteId": lst.site_id}
    if item.deleted:
        return {"id": item.id, "parentReference": parent, "deleted": {"state": "deleted"}}
    body: dict[str, Any] = {
        "id": item.id,
        "eTag": f'"{{{guid}}},{item.version}"',
        "createdDateTime": item_time(item.created),
        "lastModifiedDateTime": item_time(item.modified),
        "webUrl": f"https://contoso.sharepoint.com/Lists/{lst.name}/DispForm.aspx?ID={item.id}",
        "parentReference": parent,
        "contentType": {"id": "0x0100", "name": "Item"},
    }
    if fields:
        body["fields"] = {"id": item.id, **item.fields, "Modified": item_time(item.modified)}
    return body


def _list(state: SimState, m: re.Match[str]) -> SpList:
    lst = state.lists.find(m["site"], m["list"])
    if lst is None:
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    return lst


def delta_url(state: SimState, lst: SpList, token: str | None, expand: bool) -> str:
    """A delta link of the list, keeping ``$expand=fields`` as Graph keeps query options."""
    url = f"{state.graph_url}/sites/{lst.site_id}/lists/{lst.id}/items/delta"
    query = [f"token={token}"] if token else []
    if expand:
        query.append("$expand=fields")
    return url + ("?" + "&".join(query) if query else "")


def _resync(state: SimState, lst: SpList, expand: bool) -> GraphError:
    return GraphError(
        410,
        "resyncRequired",
        RESYNC_MESSAGE,
        {"Location": delta_url(state, lst, None, expand)},
        inner_code="resyncChangesApplyDifferences",
    )


async def list_delta(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /sites/{site}/lists/{list}/items/delta."""
    lst = _list(state, m)
    expand = "fields" in request.query.get("$expand", "")
    raw = request.query.get("token")
    size = state.config.page_size
    if raw == "latest":
        lst.delta_runs += 1
        return _page(request, state, lst, [], None, encode_token({"k": "d", "s": lst.seq, "e": lst.epoch}), expand)
    if raw is None:
        lst.delta_runs += 1
        ids = [i.id for i in lst.items.values() if not i.deleted]
        cursor, offset, snapshot = state.cursors.put(ids), 0, lst.seq
    else:
        tok = decode_token(raw)
        if tok is None or tok.get("k") not in ("d", "p"):
            raise GraphError(400, "invalidRequest", "Invalid delta token.")
        if tok.get("e") != lst.epoch:
            raise _resync(state, lst, expand)
        if tok["k"] == "d":
            lst.delta_runs += 1
            after = int(tok["s"])
            ids = [i.id for i in reversed(lst.items.values()) if i.seq > after][::-1]
            cursor, offset, snapshot = state.cursors.put(ids), 0, lst.seq
        else:
            found = state.cursors.get(str(tok["c"]))
            if found is None:
                raise _resync(state, lst, expand)
            ids, cursor, offset, snapshot = found, str(tok["c"]), int(tok["o"]), int(tok["s"])
    values = [item_json(lst, lst.items[i], state.graph_url, expand) for i in ids[offset : offset + size]]
    if offset + size < len(ids):
        nxt = encode_token({"k": "p", "s": snapshot, "e": lst.epoch, "c": cursor, "o": offset + size})
        return _page(request, state, lst, values, nxt, None, expand)
    return _page(request, state, lst, values, None, encode_token({"k": "d", "s": snapshot, "e": lst.epoch}), expand)


def _page(
    request: web.Request,
    state: SimState,
    lst: SpList,
    values: list[dict[str, Any]],
    next_token: str | None,
    delta_token: str | None,
    expand: bool,
) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"{state.graph_url}/$metadata#Collection(listItem)", "value": values}
    if next_token:
        body["@odata.nextLink"] = delta_url(state, lst, next_token, expand)
    if delta_token:
        body["@odata.deltaLink"] = delta_url(state, lst, delta_token, expand)
    return json_response(request, body)


_LIST = r"sites/(?P<site>[^/]+)/lists/(?P<list>[^/]+)"
ROUTES = [("GET", re.compile(rf"^/{_LIST}/items/(?:microsoft\.graph\.)?delta(?:\(\))?$", re.IGNORECASE), list_delta)]


def _exists(state: Any, resource: str) -> bool:
    m = re.match(rf"^/?{_LIST}/?$", resource.strip(), re.IGNORECASE)
    return m is not None and state.lists.find(m["site"], m["list"]) is not None


RESOURCE_RULES.append(
    ResourceRule(
        re.compile(rf"^/?{_LIST}/?$", re.IGNORECASE), frozenset({"updated"}), LIST_MAX_MINUTES, "list", _exists
    )
)

# The control API: create lists and items, change and delete them, expire tokens.
routes = web.RouteTableDef()


def _state(request: web.Request) -> SimState:
    from .state import STATE

    return request.app[STATE]


def _control_list(request: web.Request) -> SpList:
    lst = _state(request).lists.find(request.match_info["site"], request.match_info["list"])
    if lst is None:
        raise web.HTTPNotFound(text='{"error": "no such list"}', content_type="application/json")
    return lst


def _control_item(request: web.Request, lst: SpList) -> ListItem:
    item = lst.items.get(request.match_info["item"])
    if item is None or item.deleted:
        raise web.HTTPNotFound(text='{"error": "no such item"}', content_type="application/json")
    return item


async def read_json(request: web.Request) -> dict[str, Any]:
    """A control request's JSON object body ({} when empty); 400 for anything else."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
    return data


# The name the other simulator modules (outlook.py) import.
_body = read_json


@routes.post("/_sim/sites/{site}/lists")
async def create_list(request: web.Request) -> web.Response:
    """Create a list: {"id"?, "name"?} -> {"id", "siteId", "name", "resource"}."""
    state, body = _state(request), await read_json(request)
    site = request.match_info["site"]
    try:
        lst = state.lists.create_list(site, body.get("id"), str(body.get("name") or "List"))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    return web.json_response(
        {"id": lst.id, "siteId": lst.site_id, "name": lst.name, "resource": f"sites/{site}/lists/{lst.id}"}, status=201
    )


@routes.post("/_sim/sites/{site}/lists/{list}/items")
async def create_list_item(request: web.Request) -> web.Response:
    """Create an item: {"fields": {...}} -> the item with its fields."""
    state, lst, body = _state(request), _control_list(request), await read_json(request)
    item = state.lists.add_item(lst, dict(body.get("fields") or {}))
    return web.json_response(item_json(lst, item, state.graph_url, True), status=201)


@routes.patch("/_sim/sites/{site}/lists/{list}/items/{item}")
async def update_list_item(request: web.Request) -> web.Response:
    """Change column values: {"fields": {...}}."""
    state, lst, body = _state(request), _control_list(request), await read_json(request)
    item = _control_item(request, lst)
    state.lists.update_item(lst, item, dict(body.get("fields") or {}))
    return web.json_response(item_json(lst, item, state.graph_url, True))


@routes.delete("/_sim/sites/{site}/lists/{list}/items/{item}")
async def delete_list_item(request: web.Request) -> web.Response:
    """Delete an item."""
    state, lst = _state(request), _control_list(request)
    state.lists.delete_item(lst, _control_item(request, lst))
    return web.json_response({"deleted": 1})


@routes.post("/_sim/sites/{site}/lists/{list}/items/{item}/restore")
async def restore_list_item(request: web.Request) -> web.Response:
    """Restore a deleted item (the recycle bin's restore)."""
    state, lst = _state(request), _control_list(request)
    item = lst.items.get(request.match_info["item"])
    if item is None or not item.deleted:
        raise web.HTTPNotFound(text='{"error": "no such deleted item"}', content_type="application/json")
    state.lists.restore_item(lst, item)
    return web.json_response(item_json(lst, item, state.graph_url, True))


@routes.post("/_sim/sites/{site}/lists/{list}/expire-tokens")
async def expire_list_tokens(request: web.Request) -> web.Response:
    """Make every delta token issued so far for this list answer 410."""
    lst = _control_list(request)
    lst.epoch += 1
    return web.json_response({"listId": lst.id, "epoch": lst.epoch})
