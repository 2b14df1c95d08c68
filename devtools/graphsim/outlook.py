"""Outlook mailboxes: mail folders and messages, the primary calendar's events, contact folders and contacts.

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
- ids are immutable: a moved message keeps its id, as with ``Prefer: IdType="ImmutableId"``.
  Moving or changing an item gives it a new ``changeKey``;
- ``mailFolders`` lists the top-level folders and ``mailFolders/{id}/childFolders`` a
  folder's children (``$top`` and ``@odata.nextLink``); ``messages/{id}`` reads one message.

Subscriptions on ``users/{id}/mailFolders/{id}/messages``, ``users/{id}/messages``,
``users/{id}/events`` (or ``calendar/events``), ``users/{id}/contacts`` and
``users/{id}/contactFolders/{id}/contacts`` accept created, updated and deleted and live
at most 10,080 minutes; their notifications carry ``resourceData`` with
``@odata.type``, ``@odata.id`` and ``id``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .clock import graph_time, parse_time
from .errors import GraphError, json_response
from .subscriptions import RESOURCE_RULES, ResourceRule

if TYPE_CHECKING:
    from .state import SimState

# A change listener gets the subscription resource and (changeType, extra notification fields) pairs.
Listener = Callable[[str, list[tuple[str, dict[str, Any]]]], None]
OUTLOOK_MAX_MINUTES = 10080
# With resource data (subscription.md, maximum length of subscription per resource type).
OUTLOOK_RICH_MAX_MINUTES = 1440
DEFAULT_PAGE = 10
CHANGES = frozenset({"created", "updated", "deleted"})
MAIL_FOLDERS = ("inbox", "drafts", "sentitems", "deleteditems", "archive")
_NOTIFY_TYPE = {
    "message": ("Messages", "#Microsoft.OutlookServices.Message"),
    "event": ("Events", "#Microsoft.OutlookServices.Event"),
    "contact": ("Contacts", "#Microsoft.OutlookServices.Contact"),
}


@dataclass
class Folder:
    """A mail or contact folder; ``well_known`` is its well-known name (inbox, ...), if any."""

    id: str
    name: str
    parent: str
    well_known: str = ""


@dataclass
class Item:
    """A message, event or contact: its live properties and where it lives."""

    id: str
    kind: str
    folder: str
    props: dict[str, Any]
    created: datetime
    modified: datetime
    change_key: str = ""
    deleted: bool = False
    seq: int = 0  # the mailbox sequence of its last change


@dataclass
class Mailbox:
    """One user's mailbox. ``log`` holds (seq, item id, folder before, folder after) for every change."""

    user: str
    mail: dict[str, Folder] = field(default_factory=dict)
    contact_folders: dict[str, Folder] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    log: list[tuple[int, str, str, str]] = field(default_factory=list)
    seq: int = 0
    epoch: int = 0
    delta_requests: int = 0

    @property
    def default_contacts(self) -> str:
        return next(f.id for f in self.contact_folders.values() if f.well_known == "contacts")

    def folder_id(self, kind: str, name: str) -> str | None:
        """A folder's id from its id or well-known name (case-insensitive, as Graph)."""
        folders = self.mail if kind == "mail" else self.contact_folders
        if name in folders:
            return name
        return next((f.id for f in folders.values() if f.well_known and f.well_known == name.lower()), None)


def encode_token(data: dict[str, Any]) -> str:
    """An opaque URL-safe token for a delta position or page."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode_token(text: str) -> dict[str, Any] | None:
    """A token's content, or None when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
    return data


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


class OutlookStore:
    """Every mailbox the simulator holds."""

    def __init__(self, now: Any) -> None:
        self._now = now
        self.mailboxes: dict[str, Mailbox] = {}
        self.listeners: list[Listener] = []

    def create_mailbox(self, user: str | None) -> Mailbox:
        """A mailbox with the usual mail folders and a default contacts folder."""
        user = user or str(uuid.uuid4())
        if user.lower() in self.mailboxes:
            raise ValueError(f"mailbox {user} exists")
        box = Mailbox(user)
        for name in MAIL_FOLDERS:
            folder = Folder(_new_id("AAMkF"), name.capitalize(), "", name)
            box.mail[folder.id] = folder
        contacts = Folder(_new_id("AAMkC"), "Contacts", "", "contacts")
        box.contact_folders[contacts.id] = contacts
        self.mailboxes[user.lower()] = box
        return box

    def mailbox(self, user: str) -> Mailbox | None:
        return self.mailboxes.get(user.lower())

    def add_folder(self, box: Mailbox, kind: str, name: str, parent: str | None) -> Folder:
        folders = box.mail if kind == "mail" else box.contact_folders
        if parent is not None and parent not in folders:
            raise KeyError(parent)
        folder = Folder(_new_id("AAMkF" if kind == "mail" else "AAMkC"), name, parent or "")
        folders[folder.id] = folder
        return folder

    def add_item(self, box: Mailbox, kind: str, folder: str, props: dict[str, Any]) -> Item:
        now = self._now()
        item = Item(
            _new_id({"message": "AAMkM", "event": "AAMkE", "contact": "AAMkP"}[kind]), kind, folder, props, now, now
        )
        box.items[item.id] = item
        self._changed(box, item, "", folder, "created")
        return item

    def update_item(self, box: Mailbox, item: Item, props: dict[str, Any]) -> None:
        item.props.update(props)
        item.modified = self._now()
        self._changed(box, item, item.folder, item.folder, "updated")

    def move_item(self, box: Mailbox, item: Item, folder: str) -> None:
        before, item.folder = item.folder, folder
        item.modified = self._now()
        self._changed(box, item, before, folder, "updated")

    def delete_item(self, box: Mailbox, item: Item) -> None:
        item.deleted = True
        self._changed(box, item, item.folder, "", "deleted")

    def restore_item(self, box: Mailbox, item: Item) -> None:
        """A deleted item back in its folder, under its immutable id (moved back from Deleted Items)."""
        item.deleted = False
        item.modified = self._now()
        self._changed(box, item, "", item.folder, "created")

    def _changed(self, box: Mailbox, item: Item, before: str, after: str, change_type: str) -> None:
        box.seq += 1
        item.seq = box.seq
        item.change_key = f"CQAAAB{box.seq:08d}"
        box.log.append((box.seq, item.id, before, after))
        self._notify(box, item, before, after, change_type)

    def _notify(self, box: Mailbox, item: Item, before: str, after: str, change_type: str) -> None:
        path, odata = _NOTIFY_TYPE[item.kind]
        user = box.user
        extra = {
            "resource": f"Users/{user}/{path}/{item.id}",
            "resourceData": {"@odata.type": odata, "@odata.id": f"Users/{user}/{path}/{item.id}", "id": item.id},
            # What a subscription with includeResourceData gets encrypted (state.py); never sent as is.
            RESOURCE_KEY: _render(box, item),
        }
        targets: list[tuple[str, str]] = []
        u = user.lower()
        if item.kind == "event":
            targets += [(f"users/{u}/events", change_type), (f"users/{u}/calendar/events", change_type)]
        else:
            folders = box.mail if item.kind == "message" else box.contact_folders
            segment = "mailfolders" if item.kind == "message" else "contactfolders"
            leaf = "messages" if item.kind == "message" else "contacts"
            moved = bool(before and after and before != after)
            # A move leaves one folder and enters another; anything else stays in its folder.
            changes = [(before, "deleted"), (after, "created")] if moved else [(before or after, change_type)]
            for folder_id, kind in changes:
                folder = folders.get(folder_id)
                names = [folder_id.lower()] + ([folder.well_known] if folder and folder.well_known else [])
                targets += [(f"users/{u}/{segment}/{name}/{leaf}", kind) for name in names]
                if item.kind == "contact" and folder is not None and folder.well_known == "contacts":
                    targets.append((f"users/{u}/contacts", kind))
            if item.kind == "message":
                targets.append((f"users/{u}/messages", change_type))
        for resource, kind in dict.fromkeys(targets):
            for listener in self.listeners:
                listener(resource, [(kind, extra)])


# ---- delta ---------------------------------------------------------------------------------


# The key under which a change hands its rendered item to the notifier, for rich notifications.
RESOURCE_KEY = "@sim.resource"


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


def _render(box: Mailbox, item: Item) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": f"#microsoft.graph.{item.kind}",
        "@odata.etag": f'W/"{item.change_key}"',
        "id": item.id,
        "createdDateTime": graph_time(item.created),
        "lastModifiedDateTime": graph_time(item.modified),
        "changeKey": item.change_key,
        **item.props,
    }
    if item.kind != "event":
        body["parentFolderId"] = item.folder
    return body


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
        return _render(box, item)
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
    return json_response(request, _render(box, item))


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


# ---- subscriptions ---------------------------------------------------------------------------

_RULES = (
    (r"^/?users/(?P<u>[^/]+)/mailFolders/(?P<f>[^/]+)/messages/?$", "mail"),
    (r"^/?users/(?P<u>[^/]+)/messages/?$", ""),
    (r"^/?users/(?P<u>[^/]+)/(?:calendar/)?events/?$", ""),
    (r"^/?users/(?P<u>[^/]+)/contactFolders/(?P<f>[^/]+)/contacts/?$", "contacts"),
    (r"^/?users/(?P<u>[^/]+)/contacts/?$", ""),
)


def _exists_for(pattern: re.Pattern[str], folder_kind: str) -> Any:
    def exists(state: Any, resource: str) -> bool:
        m = pattern.match(resource.strip())
        box = state.outlook.mailbox(m["u"]) if m else None
        if m is None or box is None:
            return False
        return not folder_kind or box.folder_id(folder_kind, m["f"]) is not None

    return exists


for _text, _folder_kind in _RULES:
    _pattern = re.compile(_text, re.IGNORECASE)
    RESOURCE_RULES.append(
        ResourceRule(
            _pattern,
            CHANGES,
            OUTLOOK_MAX_MINUTES,
            "Outlook",
            _exists_for(_pattern, _folder_kind),
            resource_data=True,
            rich_max_minutes=OUTLOOK_RICH_MAX_MINUTES,
        )
    )


# ---- the control API ---------------------------------------------------------------------------

routes = web.RouteTableDef()


def _state(request: web.Request) -> SimState:
    from .state import STATE

    return request.app[STATE]


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _control_box(request: web.Request) -> Mailbox:
    box = _state(request).outlook.mailbox(request.match_info["u"])
    if box is None:
        raise web.HTTPNotFound(text='{"error": "no such mailbox"}', content_type="application/json")
    return box


def _control_item(request: web.Request, box: Mailbox) -> Item:
    item = box.items.get(request.match_info["i"])
    if item is None or item.deleted:
        raise web.HTTPNotFound(text='{"error": "no such item"}', content_type="application/json")
    return item


def _item_out(box: Mailbox, item: Item) -> dict[str, Any]:
    return _render(box, item)


@routes.post("/_sim/outlook/mailboxes")
async def create_mailbox(request: web.Request) -> web.Response:
    """Create a mailbox: {"userId"?} -> {"userId", "mailFolders": {wellKnownName: id}, "contactsFolderId"}."""
    state, body = _state(request), await _body(request)
    try:
        box = state.outlook.create_mailbox(body.get("userId"))
    except ValueError as exc:
        return _err(409, str(exc))
    folders = {f.well_known: f.id for f in box.mail.values() if f.well_known}
    return web.json_response(
        {"userId": box.user, "mailFolders": folders, "contactsFolderId": box.default_contacts}, status=201
    )


@routes.post("/_sim/outlook/mailboxes/{u}/{kind:mailFolders|contactFolders}")
async def create_folder(request: web.Request) -> web.Response:
    """Create a folder: {"displayName", "parentFolderId"?} -> {"id", "displayName", "parentFolderId"}."""
    state, box, body = _state(request), _control_box(request), await _body(request)
    kind = "mail" if request.match_info["kind"] == "mailFolders" else "contacts"
    try:
        folder = state.outlook.add_folder(
            box, kind, str(body.get("displayName") or "Folder"), body.get("parentFolderId")
        )
    except KeyError:
        return _err(404, "parent folder not found")
    return web.json_response({"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent}, status=201)


@routes.post("/_sim/outlook/mailboxes/{u}/{kind:messages|events|contacts}")
async def create_item(request: web.Request) -> web.Response:
    """Create a message ({"folderId"?: inbox, ...}), event ({"start", "end", ...}) or contact ({"folderId"?, ...})."""
    state, box, body = _state(request), _control_box(request), await _body(request)
    kind = request.match_info["kind"][:-1]
    props = {k: v for k, v in body.items() if k not in ("folderId", "start", "end")}
    folder = ""
    if kind == "event":
        try:
            start, end = parse_time(str(body["start"])), parse_time(str(body["end"]))
        except (KeyError, ValueError):
            return _err(400, "start and end (ISO 8601) are required")
        props |= {"start": {"dateTime": graph_time(start), "timeZone": "UTC"}}
        props |= {"end": {"dateTime": graph_time(end), "timeZone": "UTC"}}
    else:
        folder_kind = "mail" if kind == "message" else "contacts"
        default = "inbox" if kind == "message" else "contacts"
        found = box.folder_id(folder_kind, str(body.get("folderId") or default))
        if found is None:
            return _err(404, "folder not found")
        folder = found
    item = state.outlook.add_item(box, kind, folder, props)
    return web.json_response(_item_out(box, item), status=201)


@routes.patch("/_sim/outlook/mailboxes/{u}/items/{i}")
async def update_item(request: web.Request) -> web.Response:
    """Change an item's properties: {"subject"?, "start"?, "end"?, ...} (one change)."""
    state, box, body = _state(request), _control_box(request), await _body(request)
    item = _control_item(request, box)
    props = dict(body)
    for edge in ("start", "end"):
        if edge in props and isinstance(props[edge], str):
            props[edge] = {"dateTime": graph_time(parse_time(props[edge])), "timeZone": "UTC"}
    state.outlook.update_item(box, item, props)
    return web.json_response(_item_out(box, item))


@routes.post("/_sim/outlook/mailboxes/{u}/items/{i}/move")
async def move_item(request: web.Request) -> web.Response:
    """Move a message or contact to another folder of its kind: {"folderId"}."""
    state, box, body = _state(request), _control_box(request), await _body(request)
    item = _control_item(request, box)
    folder = box.folder_id("mail" if item.kind == "message" else "contacts", str(body.get("folderId") or ""))
    if folder is None or item.kind == "event":
        return _err(404, "folder not found")
    state.outlook.move_item(box, item, folder)
    return web.json_response(_item_out(box, item))


@routes.delete("/_sim/outlook/mailboxes/{u}/items/{i}")
async def delete_item(request: web.Request) -> web.Response:
    """Delete an item."""
    state, box = _state(request), _control_box(request)
    state.outlook.delete_item(box, _control_item(request, box))
    return web.json_response({"deleted": 1})


@routes.post("/_sim/outlook/mailboxes/{u}/items/{i}/restore")
async def restore_item(request: web.Request) -> web.Response:
    """Bring a deleted item back."""
    state, box = _state(request), _control_box(request)
    item = box.items.get(request.match_info["i"])
    if item is None or not item.deleted:
        return _err(404, "no such deleted item")
    state.outlook.restore_item(box, item)
    return web.json_response(_item_out(box, item))


@routes.post("/_sim/outlook/mailboxes/{u}/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Make every delta token issued so far for this mailbox answer 410."""
    box = _control_box(request)
    box.epoch += 1
    return web.json_response({"userId": box.user, "epoch": box.epoch})


@routes.get("/_sim/outlook/mailboxes/{u}")
async def mailbox_stats(request: web.Request) -> web.Response:
    """A mailbox's folders, live item count and delta request count."""
    box = _control_box(request)
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
