"""Outlook's Graph reads: message, contact and event delta, mail folders, one message.

Follows Graph's Outlook delta documentation:
- ``mailFolders/{id}/messages/delta`` and ``contactFolders/{id}/contacts/delta`` (and
  ``contacts/delta`` for the default contacts folder) track one folder each; a message
  that left the folder (moved or deleted) comes back as its id with
  ``@removed: {"reason": "deleted"}`` (delta-query-messages.md);
- ``calendarView/delta?startDateTime=&endDateTime=`` tracks the primary calendar over a
  window fixed by the first request; later links carry it. Events outside the window
  that were added, updated or deleted come under ``@removed`` with reason ``deleted``
  too (event-delta.md);
- ``Prefer: odata.maxpagesize=N`` sets the page size (default 10); links carry
  ``$skiptoken``/``$deltatoken``; a token from before ``expire-tokens`` answers
  **410 Gone** ``SyncStateNotFound`` (Outlook's answer to a sync state it no longer has);
- ``mailFolders`` lists the top-level folders and ``mailFolders/{id}/childFolders`` a
  folder's children (``$top`` and ``@odata.nextLink``); ``messages/{id}`` reads one message.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..clock import graph_time, parse_time
from ..delta_tokens import decode_token, encode_token
from ..errors import GraphError, json_response
from ..models.outlook import Item, Mailbox, render
from ..state import SimState

DEFAULT_PAGE = 10


def _page_size(request: web.Request) -> int:
    match = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
    return max(1, int(match.group(1))) if match else DEFAULT_PAGE


def _in_window(item: Item, window: tuple[str, str]) -> bool:
    try:
        start = parse_time(str(item.props["start"]["dateTime"]))
        end = parse_time(str(item.props["end"]["dateTime"]))
    except (KeyError, TypeError, ValueError):
        return False
    return start < parse_time(window[1]) and end > parse_time(window[0])


def _removed(item_id: str, kind: str) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", "id": item_id, "@removed": {"reason": "deleted"}}


def _visible(item: Item, kind: str, folder: str, window: tuple[str, str] | None) -> bool:
    if item.deleted or item.kind != kind:
        return False
    if window is not None:
        return _in_window(item, window)
    return item.folder == folder


def _results(
    box: Mailbox, kind: str, folder: str, window: tuple[str, str] | None, since: int | None, upto: int
) -> list[str]:
    """The ids a round from ``since`` (None: the initial sync) up to sequence ``upto`` pages over, in order.

    An initial sync pages over the items visible now and those changed since it began,
    so an item deleted or moved mid-round never shifts the pages after it (``_entry``
    renders nothing for an item no longer visible).
    """
    if since is None:
        return [
            i.id for i in box.items.values() if i.kind == kind and (i.seq > upto or _visible(i, kind, folder, window))
        ]
    touched: dict[str, None] = {}
    for seq, item_id, before, after in box.log:
        in_scope = window is not None or folder in (before, after)
        if since < seq <= upto and box.items[item_id].kind == kind and in_scope:
            touched.pop(item_id, None)
            touched[item_id] = None
    return list(touched)


def _entry(box: Mailbox, item_id: str, kind: str, folder: str, window: tuple[str, str] | None, initial: bool) -> Any:
    item = box.items[item_id]
    if _visible(item, kind, folder, window):
        return render(box, item)
    return None if initial else _removed(item_id, kind)


async def _delta(
    request: web.Request, state: SimState, box: Mailbox, kind: str, folder: str, base: str
) -> web.Response:
    box.delta_requests += 1
    query = request.query
    token_text = query.get("$skiptoken") or query.get("$deltatoken") or query.get("$deltaToken")
    window: tuple[str, str] | None = None
    if token_text:
        token = decode_token(token_text)
        if token is None or token.get("k") != kind or token.get("f") != folder:
            raise GraphError(400, "BadRequest", "The delta token is invalid.")
        if token.get("e") != box.epoch:
            raise GraphError(410, "SyncStateNotFound", "The sync state is not found. Sync from scratch again.")
        since, upto, offset = token.get("s"), int(token.get("u", box.seq)), int(token.get("o", 0))
        if token.get("w"):
            window = (str(token["w"][0]), str(token["w"][1]))
        if "$deltatoken" in query or "$deltaToken" in query:
            upto, offset = box.seq, 0
    else:
        since, upto, offset = None, box.seq, 0
        if kind == "event":
            start, end = query.get("startDateTime"), query.get("endDateTime")
            if not start or not end:
                raise GraphError(400, "ErrorInvalidParameter", "startDateTime and endDateTime are required.")
            try:
                window = (graph_time(parse_time(start)), graph_time(parse_time(end)))
            except ValueError as exc:
                raise GraphError(400, "ErrorInvalidParameter", "startDateTime or endDateTime is invalid.") from exc
    results = _results(box, kind, folder, window, since, upto)
    size = _page_size(request)
    entries = (_entry(box, i, kind, folder, window, since is None) for i in results[offset : offset + size])
    page = [entry for entry in entries if entry is not None]
    common = {"k": kind, "f": folder, "e": box.epoch, **({"w": list(window)} if window else {})}
    body: dict[str, Any] = {"@odata.context": f"{state.graph_url}/$metadata#Collection({kind})", "value": page}
    if offset + size < len(results):
        body["@odata.nextLink"] = (
            f"{base}?$skiptoken={encode_token({**common, 's': since, 'u': upto, 'o': offset + size})}"
        )
    else:
        body["@odata.deltaLink"] = f"{base}?$deltatoken={encode_token({**common, 's': upto})}"
    return json_response(request, body)


def _box(state: SimState, m: re.Match[str]) -> Mailbox:
    box = state.outlook.mailbox(m["u"])
    if box is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{m['u']}' is invalid.")
    return box


def _folder(box: Mailbox, kind: str, name: str) -> str:
    folder = box.folder_id(kind, name)
    if folder is None:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return folder


async def message_delta(
    request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]
) -> web.Response:
    """GET /users/{id}/mailFolders/{id}/messages/delta."""
    box = _box(state, m)
    folder = _folder(box, "mail", m["f"])
    return await _delta(
        request, state, box, "message", folder, f"{state.graph_url}/users/{m['u']}/mailFolders/{m['f']}/messages/delta"
    )


async def contact_delta(
    request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]
) -> web.Response:
    """GET /users/{id}/contactFolders/{id}/contacts/delta and /users/{id}/contacts/delta."""
    box = _box(state, m)
    folder = _folder(box, "contacts", m["f"]) if m["f"] else box.default_contacts
    path = f"contactFolders/{m['f']}/contacts" if m["f"] else "contacts"
    return await _delta(request, state, box, "contact", folder, f"{state.graph_url}/users/{m['u']}/{path}/delta")


async def event_delta(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /users/{id}/calendarView/delta?startDateTime=&endDateTime=."""
    box = _box(state, m)
    return await _delta(request, state, box, "event", "", f"{state.graph_url}/users/{m['u']}/calendarView/delta")


async def list_folders(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /users/{id}/mailFolders and /users/{id}/mailFolders/{id}/childFolders."""
    box = _box(state, m)
    parent = _folder(box, "mail", m["f"]) if m["f"] else ""
    children = [f for f in box.mail.values() if f.parent == parent]
    top = int(request.query.get("$top", "10") or 10)
    skip = int(request.query.get("$skip", "0") or 0)
    value = [
        {
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": sum(1 for c in box.mail.values() if c.parent == f.id),
        }
        for f in children[skip : skip + top]
    ]
    body: dict[str, Any] = {"@odata.context": f"{state.graph_url}/$metadata#mailFolders", "value": value}
    if skip + top < len(children):
        body["@odata.nextLink"] = str(request.url.with_query({**request.query, "$skip": str(skip + top)}))
    return json_response(request, body)


async def get_message(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /users/{id}/messages/{id}."""
    box = _box(state, m)
    item = box.items.get(m["i"])
    if item is None or item.deleted or item.kind != "message":
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return json_response(request, render(box, item))


_USER = r"users/(?P<u>[^/]+)"
ROUTES = [
    ("GET", re.compile(rf"^/{_USER}/mailFolders/(?P<f>[^/]+)/messages/delta(?:\(\))?$", re.IGNORECASE), message_delta),
    (
        "GET",
        re.compile(rf"^/{_USER}/(?:contactFolders/(?P<f>[^/]+)/)?contacts/delta(?:\(\))?$", re.IGNORECASE),
        contact_delta,
    ),
    ("GET", re.compile(rf"^/{_USER}/calendarView/delta(?:\(\))?$", re.IGNORECASE), event_delta),
    ("GET", re.compile(rf"^/{_USER}/mailFolders(?:/(?P<f>[^/]+)/childFolders)?/?$", re.IGNORECASE), list_folders),
    ("GET", re.compile(rf"^/{_USER}/messages/(?P<i>[^/]+)$", re.IGNORECASE), get_message),
]
