"""The control API of the directory: users, groups and membership, their changes, expired tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..models.directory import Collection, DirObject
from ..state import SimState
from .control_api import ItemRoutes, if_deleted, if_live, missing, read_json, state_of

routes = web.RouteTableDef()


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
            for c in state_of(request).directory.collections.values()
        }
    )


@routes.post("/_sim/users")
async def create_user(request: web.Request) -> web.Response:
    """Create a user: {"id"?, "displayName", ...properties} -> the user."""
    body = await read_json(request)
    obj = state_of(request).directory.add("users", {k: v for k, v in body.items() if k != "id"}, body.get("id"))
    return web.json_response({"id": obj.id, **obj.props}, status=201)


@routes.post("/_sim/users:generate")
async def generate_users(request: web.Request) -> web.Response:
    """Create many users at once, without notifications: {"count", "prefix"?} -> {"ids"}."""
    body = await read_json(request)
    ids = state_of(request).directory.generate_users(int(body.get("count", 0)), str(body.get("prefix", "user")))
    return web.json_response({"ids": ids}, status=201)


@routes.post("/_sim/groups")
async def create_group(request: web.Request) -> web.Response:
    """Create a group: {"id"?, "displayName", "members"?: [user ids], ...} -> the group."""
    state, body = state_of(request), await read_json(request)
    members = [str(m) for m in body.get("members") or []]
    props = {k: v for k, v in body.items() if k not in ("id", "members")}
    obj = state.directory.add("groups", props, body.get("id"))
    seq = state.directory.collections["groups"].seq
    for member in members:
        obj.members[member] = (seq, True)  # part of the creation: one change
    return web.json_response({"id": obj.id, **obj.props, "members": members}, status=201)


class DirectoryObjects(ItemRoutes[Collection, DirObject]):
    """Users and groups: a change answers the object's id and properties."""

    item_key = "id"
    item_noun = "object"
    restore_noun = "deleted object"

    def container(self, request: web.Request) -> Collection | None:
        return state_of(request).directory.collections[request.match_info["coll"]]

    def item(self, where: Collection, key: str) -> DirObject | None:
        return if_live(where.objects.get(key))

    def deleted_item(self, where: Collection, key: str) -> DirObject | None:
        return if_deleted(where.objects.get(key))

    def update(self, state: SimState, where: Collection, item: DirObject, body: dict[str, Any]) -> Any:
        state.directory.update(where.name, item, {k: v for k, v in body.items() if k != "id"})
        return {"id": item.id, **item.props}

    def delete(self, state: SimState, where: Collection, item: DirObject) -> Any:
        state.directory.delete(where.name, item)
        return {"deleted": 1}

    def restore(self, state: SimState, where: Collection, item: DirObject) -> Any:
        state.directory.restore(where.name, item.id)
        return {"id": item.id, **item.props}

    def expire(self, where: Collection) -> Any:
        """Delta tokens issued so far answer syncStateNotFound."""
        where.epoch += 1
        return {"collection": where.name, "epoch": where.epoch}


DirectoryObjects().add_to(routes, "/_sim/{coll:users|groups}", create=None, item="/{id}")


def _group(request: web.Request) -> DirObject:
    group = state_of(request).directory.get("groups", request.match_info["id"])
    if group is None:
        raise missing("object")
    return group


def _members(group: DirObject) -> dict[str, Any]:
    return {"members": sorted(m for m, (_, present) in group.members.items() if present)}


@routes.post("/_sim/groups/{id}/members")
async def add_members(request: web.Request) -> web.Response:
    """Add members: {"ids": [user ids]} (one change per member)."""
    state, group, body = state_of(request), _group(request), await read_json(request)
    for member in body.get("ids") or []:
        state.directory.set_member(group, str(member), True)
    return web.json_response(_members(group))


@routes.delete("/_sim/groups/{id}/members/{member}")
async def remove_member(request: web.Request) -> web.Response:
    """Remove a member."""
    state, group = state_of(request), _group(request)
    state.directory.set_member(group, request.match_info["member"], False)
    return web.json_response(_members(group))
