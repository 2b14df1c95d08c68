"""Users and groups with their delta queries, group membership, and change notifications.

Follows user-delta and group-delta: the first call enumerates, ``$deltaToken=latest``
returns no objects and the current deltaLink, a deltaLink returns the objects changed
since (removed ones as their id with ``@removed``), and a group's membership changes
come as ``members@delta`` (a member that left carries ``@removed``). ``$select``
limits the properties (``id`` always comes), and ``$filter=id eq '{id}'`` limits
groups delta to one group. Links carry ``$deltatoken``/``$skiptoken``. A delta
token past its lifetime answers 400 ``syncStateNotFound``, as Graph does for
directory objects. Subscriptions on ``users`` and ``groups`` accept ``updated`` and
``deleted``; notifications carry resourceData with the object's id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .clock import graph_time
from .errors import GraphError, json_response
from .lists import Listener, decode_token, encode_token, read_json
from .subscriptions import RESOURCE_RULES, ResourceRule

if TYPE_CHECKING:
    from .state import SimState

DIRECTORY_MAX_MINUTES = 41760
ODATA_TYPE = {"users": "#microsoft.graph.user", "groups": "#microsoft.graph.group"}
# What a notification's resourceData names (Graph capitalises these).
NOTIFY_TYPE = {"users": ("Users", "#Microsoft.Graph.User"), "groups": ("Groups", "#Microsoft.Graph.Group")}


@dataclass
class DirObject:
    """A user or group; a group keeps a log of its membership changes."""

    id: str
    props: dict[str, Any]
    seq: int = 0
    deleted: bool = False
    # member id -> (sequence of the last change, still a member)
    members: dict[str, tuple[int, bool]] = field(default_factory=dict)


@dataclass
class Collection:
    """users or groups: objects in sequence order, and the epoch that stales tokens."""

    name: str
    objects: dict[str, DirObject] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0
    delta_runs: int = 0  # runs started: enumerations, latest, and deltaLinks followed
    delta_requests: int = 0  # every delta page served
    enumerations: int = 0  # full enumerations started (no token)


class Directory:
    """The tenant's users and groups."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.collections = {"users": Collection("users"), "groups": Collection("groups")}
        self.listeners: list[Listener] = []
        self._now = now or (lambda: datetime.now(UTC))

    def _stamp(self, coll: Collection, obj: DirObject, change_type: str) -> None:
        coll.seq += 1
        obj.seq = coll.seq
        coll.objects.pop(obj.id, None)
        coll.objects[obj.id] = obj
        path, odata = NOTIFY_TYPE[coll.name]
        extra = {
            "resource": f"{path}/{obj.id}",
            "resourceData": {"@odata.type": odata, "@odata.id": f"{path}/{obj.id}", "id": obj.id},
        }
        for listener in self.listeners:
            listener(coll.name, [(change_type, extra)])

    def get(self, collection: str, object_id: str) -> DirObject | None:
        """A live user or group."""
        obj = self.collections[collection].objects.get(object_id)
        return None if obj is None or obj.deleted else obj

    def add(self, collection: str, props: dict[str, Any], object_id: str | None = None) -> DirObject:
        """A new user or group."""
        # createdDateTime: a property of user and group resources, returned when selected.
        obj = DirObject(object_id or str(uuid.uuid4()), {"createdDateTime": graph_time(self._now()), **props})
        self._stamp(self.collections[collection], obj, "updated")
        return obj

    def update(self, collection: str, obj: DirObject, props: dict[str, Any]) -> None:
        """Change some properties."""
        obj.props.update(props)
        self._stamp(self.collections[collection], obj, "updated")

    def delete(self, collection: str, obj: DirObject) -> None:
        """Delete a user or group; a deleted user also leaves every group."""
        obj.deleted = True
        self._stamp(self.collections[collection], obj, "deleted")
        if collection == "users":
            for group in list(self.collections["groups"].objects.values()):
                if not group.deleted and group.members.get(obj.id, (0, False))[1]:
                    self.set_member(group, obj.id, False)

    def restore(self, collection: str, object_id: str) -> DirObject | None:
        """Restore a deleted user or group (directory/deletedItems/{id}/restore); None when none is deleted."""
        obj = self.collections[collection].objects.get(object_id)
        if obj is None or not obj.deleted:
            return None
        obj.deleted = False
        self._stamp(self.collections[collection], obj, "updated")
        return obj

    def set_member(self, group: DirObject, user_id: str, present: bool) -> None:
        """Add a member to a group, or remove one: the group changes."""
        groups = self.collections["groups"]
        group.members[user_id] = (groups.seq + 1, present)
        self._stamp(groups, group, "updated")

    def generate_users(self, count: int, prefix: str) -> list[str]:
        """``count`` users at once, without notifications (a large tenant)."""
        users = self.collections["users"]
        ids = []
        for n in range(count):
            users.seq += 1
            props = {"displayName": f"{prefix} {n}", "createdDateTime": graph_time(self._now())}
            obj = DirObject(str(uuid.uuid4()), props, users.seq)
            users.objects[obj.id] = obj
            ids.append(obj.id)
        return ids


def render(coll: Collection, obj: DirObject, select: set[str] | None, after: int | None) -> dict[str, Any]:
    """A delta object: removed, or its selected properties and (groups) members@delta since ``after``."""
    if obj.deleted:
        return {"@odata.type": ODATA_TYPE[coll.name], "id": obj.id, "@removed": {"reason": "changed"}}
    body: dict[str, Any] = {"@odata.type": ODATA_TYPE[coll.name], "id": obj.id}
    for key, value in obj.props.items():
        if select is None or key in select:
            body[key] = value
    if coll.name == "groups" and (select is None or "members" in select):
        changes = []
        for member, (seq, present) in obj.members.items():
            if after is None and not present:
                continue  # an enumeration lists current members only
            if after is not None and seq <= after:
                continue
            entry: dict[str, Any] = {"@odata.type": "#microsoft.graph.user", "id": member}
            if not present:
                entry["@removed"] = {"reason": "deleted"}
            changes.append(entry)
        if changes:
            body["members@delta"] = changes
    return body


def _link(state: SimState, coll: Collection, kind: str, token: str) -> str:
    name = "$deltatoken" if kind == "d" else "$skiptoken"
    return f"{state.graph_url}/{coll.name}/delta?{name}={token}"


async def directory_delta(
    request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]
) -> web.Response:
    """GET /users/delta and /groups/delta."""
    coll = state.directory.collections[m["coll"].lower()]
    coll.delta_requests += 1
    query = {k.lower(): v for k, v in request.query.items()}
    if query.get("$deltatoken") == "latest":
        coll.delta_runs += 1
        latest = encode_token({"k": "d", "s": coll.seq, "e": coll.epoch, "sel": query.get("$select"), "f": None})
        return _page(request, state, coll, [], None, latest)
    raw = query.get("$deltatoken") or query.get("$skiptoken")
    if raw is None:
        coll.delta_runs += 1
        coll.enumerations += 1
        only = _filter_ids(query.get("$filter"))
        ids = [o.id for o in coll.objects.values() if not o.deleted and (only is None or o.id in only)]
        tok: dict[str, Any] = {"s": coll.seq, "e": coll.epoch, "sel": query.get("$select"), "f": query.get("$filter")}
        cursor, offset, after = state.cursors.put(ids), 0, None
    else:
        decoded = decode_token(raw)
        if decoded is None or decoded.get("k") not in ("d", "p"):
            raise GraphError(400, "BadRequest", "Invalid delta token.")
        if decoded.get("e") != coll.epoch:
            raise GraphError(
                400, "syncStateNotFound", "The sync state generation is not found. The delta token is expired."
            )
        tok = {"s": coll.seq, "e": coll.epoch, "sel": decoded.get("sel"), "f": decoded.get("f")}
        if decoded["k"] == "d":
            coll.delta_runs += 1
            after = int(decoded["s"])
            only = _filter_ids(decoded.get("f"))
            ids = [o.id for o in coll.objects.values() if o.seq > after and (only is None or o.id in only)]
            cursor, offset = state.cursors.put(ids), 0
        else:
            found = state.cursors.get(str(decoded["c"]))
            if found is None:
                raise GraphError(400, "syncStateNotFound", "The sync state generation is not found.")
            ids, cursor, offset = found, str(decoded["c"]), int(decoded["o"])
            tok["s"], after = decoded["s"], decoded.get("a")
    select = {s.strip() for s in str(tok["sel"]).split(",")} if tok.get("sel") else None
    size = state.config.page_size
    values = [render(coll, coll.objects[i], select, after) for i in ids[offset : offset + size]]
    if offset + size < len(ids):
        nxt = encode_token({**tok, "k": "p", "c": cursor, "o": offset + size, "a": after})
        return _page(request, state, coll, values, nxt, None)
    return _page(request, state, coll, values, None, encode_token({**tok, "k": "d"}))


def _filter_ids(text: str | None) -> set[str] | None:
    if not text:
        return None
    ids = set(re.findall(r"id\s+eq\s+'([^']+)'", text, re.IGNORECASE))
    if not ids:
        raise GraphError(400, "Request_UnsupportedQuery", "Only id eq filters are supported with delta.")
    return ids


def _page(
    request: web.Request,
    state: SimState,
    coll: Collection,
    values: list[dict[str, Any]],
    next_token: str | None,
    delta_token: str | None,
) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"{state.graph_url}/$metadata#{coll.name}", "value": values}
    if next_token:
        body["@odata.nextLink"] = _link(state, coll, "p", next_token)
    if delta_token:
        body["@odata.deltaLink"] = _link(state, coll, "d", delta_token)
    return json_response(request, body)


ROUTES = [
    (
        "GET",
        re.compile(r"^/(?P<coll>users|groups)/(?:microsoft\.graph\.)?delta(?:\(\))?$", re.IGNORECASE),
        directory_delta,
    )
]

for _name in ("users", "groups"):
    RESOURCE_RULES.append(
        ResourceRule(
            re.compile(rf"^/?{_name}/?$", re.IGNORECASE),
            frozenset({"updated", "deleted"}),
            DIRECTORY_MAX_MINUTES,
            _name,
            lambda state, resource: True,
        )
    )

# The control API: users, groups and membership.
routes = web.RouteTableDef()


def _state(request: web.Request) -> SimState:
    from .state import STATE

    return request.app[STATE]


def _object(request: web.Request, collection: str, key: str) -> DirObject:
    obj = _state(request).directory.get(collection, request.match_info[key])
    if obj is None:
        raise web.HTTPNotFound(text='{"error": "no such object"}', content_type="application/json")
    return obj


@routes.get("/_sim/directory")
async def directory_stats(request: web.Request) -> web.Response:
    """Counters per collection: {"users": {"objects", "deltaRuns", "deltaRequests", "enumerations"}, "groups": ...}."""
    return web.json_response(
        {
            c.name: {
                "objects": sum(1 for o in c.objects.values() if not o.deleted),
                "deltaRuns": c.delta_runs,
                "deltaRequests": c.delta_requests,
                "enumerations": c.enumerations,
            }
            for c in _state(request).directory.collections.values()
        }
    )


@routes.post("/_sim/users")
async def create_user(request: web.Request) -> web.Response:
    """Create a user: {"id"?, "displayName", ...properties} -> the user."""
    body = await read_json(request)
    obj = _state(request).directory.add("users", {k: v for k, v in body.items() if k != "id"}, body.get("id"))
    return web.json_response({"id": obj.id, **obj.props}, status=201)


@routes.post("/_sim/users:generate")
async def generate_users(request: web.Request) -> web.Response:
    """Create many users at once, without notifications: {"count", "prefix"?} -> {"ids"}."""
    body = await read_json(request)
    ids = _state(request).directory.generate_users(int(body.get("count", 0)), str(body.get("prefix", "user")))
    return web.json_response({"ids": ids}, status=201)


@routes.post("/_sim/groups")
async def create_group(request: web.Request) -> web.Response:
    """Create a group: {"id"?, "displayName", "members"?: [user ids], ...} -> the group."""
    state, body = _state(request), await read_json(request)
    members = [str(m) for m in body.get("members") or []]
    props = {k: v for k, v in body.items() if k not in ("id", "members")}
    obj = state.directory.add("groups", props, body.get("id"))
    seq = state.directory.collections["groups"].seq
    for member in members:
        obj.members[member] = (seq, True)  # part of the creation: one change
    return web.json_response({"id": obj.id, **obj.props, "members": members}, status=201)


@routes.patch("/_sim/{coll:users|groups}/{id}")
async def update_object(request: web.Request) -> web.Response:
    """Change properties of a user or group."""
    coll = request.match_info["coll"]
    obj, body = _object(request, coll, "id"), await read_json(request)
    _state(request).directory.update(coll, obj, {k: v for k, v in body.items() if k != "id"})
    return web.json_response({"id": obj.id, **obj.props})


@routes.delete("/_sim/{coll:users|groups}/{id}")
async def delete_object(request: web.Request) -> web.Response:
    """Delete a user or group."""
    coll = request.match_info["coll"]
    _state(request).directory.delete(coll, _object(request, coll, "id"))
    return web.json_response({"deleted": 1})


@routes.post("/_sim/{coll:users|groups}/{id}/restore")
async def restore_object(request: web.Request) -> web.Response:
    """Restore a deleted user or group."""
    coll = request.match_info["coll"]
    obj = _state(request).directory.restore(coll, request.match_info["id"])
    if obj is None:
        raise web.HTTPNotFound(text='{"error": "no such deleted object"}', content_type="application/json")
    return web.json_response({"id": obj.id, **obj.props})


@routes.post("/_sim/groups/{id}/members")
async def add_members(request: web.Request) -> web.Response:
    """Add members: {"ids": [user ids]} (one change per member)."""
    state, group, body = _state(request), _object(request, "groups", "id"), await read_json(request)
    for member in body.get("ids") or []:
        state.directory.set_member(group, str(member), True)
    return web.json_response({"members": sorted(m for m, (_, p) in group.members.items() if p)})


@routes.delete("/_sim/groups/{id}/members/{member}")
async def remove_member(request: web.Request) -> web.Response:
    """Remove a member."""
    state, group = _state(request), _object(request, "groups", "id")
    state.directory.set_member(group, request.match_info["member"], False)
    return web.json_response({"members": sorted(m for m, (_, p) in group.members.items() if p)})


@routes.post("/_sim/{coll:users|groups}/expire-tokens")
async def expire_directory_tokens(request: web.Request) -> web.Response:
    """Make every delta token issued so far for users (or groups) answer syncStateNotFound."""
    coll = _state(request).directory.collections[request.match_info["coll"]]
    coll.epoch += 1
    return web.json_response({"collection": coll.name, "epoch": coll.epoch})
