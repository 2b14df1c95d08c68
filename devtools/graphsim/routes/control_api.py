"""The control API's common parts (``/_sim``): reading a body, refusing, and one routine per item operation.

JSON in, JSON out, no authentication (loopback only). Every route works on one tenant's
data: the one the ``tenant`` query parameter names (``?tenant={id}``, a tenant the simulator
knows: routes/control_tenants.py), else the home tenant (``SimConfig.tenant_id``). The clock,
delivery, rich-notification faults and reset are the simulator's, whatever tenant is named.

Every kind of item the control API changes (drive items, list items, mail, users and groups,
SharePoint items, Teams messages) is created, changed, deleted and restored, and has its
delta tokens expired, by the same routines of :class:`ItemRoutes`; a kind says only where
its items live and what each operation does to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

from ..state import STATE, SimState

TENANT_PARAM = "tenant"
C = TypeVar("C")  # where a kind's items live: a drive, a list, a mailbox, a chat...
I = TypeVar("I")  # noqa: E741 - one item of the kind


class Tombstoned(Protocol):
    """An item that stays, marked deleted, once deleted (so that delta can report it)."""

    deleted: bool


T = TypeVar("T")
D = TypeVar("D", bound=Tombstoned)


def state_of(request: web.Request) -> SimState:
    """The state of the tenant the request is for: the ``tenant`` query parameter, else the home tenant.

    404 ``{"error": "no such tenant"}`` for a tenant the simulator does not know (add it first:
    ``POST /_sim/tenants``).
    """
    home = request.app[STATE]
    wanted = request.query.get(TENANT_PARAM)
    if not wanted:
        return home
    record = home.tenants.get(wanted)
    if record is None:
        raise missing("tenant")
    return home.tenants.state_of(record)


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


def missing(what: str) -> web.HTTPNotFound:
    """404 ``{"error": "no such <what>"}``."""
    return web.HTTPNotFound(text=json.dumps({"error": f"no such {what}"}), content_type="application/json")


def if_live(found: D | None) -> D | None:
    """``found`` unless it is deleted."""
    return None if found is None or found.deleted else found


def if_deleted(found: D | None) -> D | None:
    """``found`` if it is deleted."""
    return found if found is not None and found.deleted else None


def created(make: Callable[[], T]) -> T:
    """What ``make`` makes; 409 ``{"error": ...}`` when it refuses (ValueError: it exists already)."""
    try:
        return make()
    except ValueError as exc:
        raise web.HTTPConflict(text=json.dumps({"error": str(exc)}), content_type="application/json") from None


class ControlError(Exception):
    """A control request the simulator refuses, answered ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        """The answer."""
        return web.json_response({"error": self.message}, status=self.status)


class ItemRoutes(Generic[C, I]):
    """The control routes of one kind of item: a subclass says where its items live and what each operation does.

    Each routine finds the container (404 ``no such <container_noun>``), reads the body, finds
    the item (404 ``no such <item_noun>``, or ``<restore_noun>`` for a restore), then answers
    what the operation returned: JSON, or 204 for None; a :class:`ControlError` is its refusal.
    """

    container_noun = "container"
    item_key = "item"  # the item id's name in the route
    item_noun = "item"
    restore_noun = "deleted item"
    created_status = 201

    def container(self, request: web.Request) -> C | None:
        """Where the items live, from the route, or None."""
        raise NotImplementedError

    def item(self, where: C, key: str) -> I | None:
        """A live item, or None."""
        raise NotImplementedError

    def deleted_item(self, where: C, key: str) -> I | None:
        """An item that a restore brings back, or None."""
        raise NotImplementedError

    def create(self, state: SimState, where: C, body: dict[str, Any], info: Mapping[str, str]) -> Any:
        """Make an item from the body; the answer."""
        raise NotImplementedError

    def update(self, state: SimState, where: C, item: I, body: dict[str, Any]) -> Any:
        """Change an item as the body says; the answer."""
        raise NotImplementedError

    def delete(self, state: SimState, where: C, item: I) -> Any:
        """Delete an item; the answer (None: 204)."""
        raise NotImplementedError

    def restore(self, state: SimState, where: C, item: I) -> Any:
        """Bring a deleted item back; the answer."""
        raise NotImplementedError

    def expire(self, where: C) -> Any:
        """Make every delta token issued so far for the container stale; the answer."""
        raise NotImplementedError

    def missing(self, what: str) -> web.HTTPException:
        """The 404 for something the route names and the simulator does not hold."""
        return missing(what)

    async def body(self, request: web.Request) -> dict[str, Any]:
        """The request's body."""
        return await read_json(request)

    def add_to(
        self,
        routes: web.RouteTableDef,
        base: str,
        *,
        create: str | None,
        item: str,
        restore: str = "/restore",
        expire: str | None = "/expire-tokens",
    ) -> None:
        """Route the routines: POST ``base+create``, PATCH and DELETE ``base+item``, POST ``base+item+restore``
        and POST ``base+expire`` (None: no such route)."""
        if create is not None:
            routes.post(base + create)(self._create)
        routes.patch(base + item)(self._update)
        routes.delete(base + item)(self._delete)
        routes.post(base + item + restore)(self._restore)
        if expire is not None:
            routes.post(base + expire)(self._expire)

    def where(self, request: web.Request) -> C:
        """The container the route names, or 404."""
        found = self.container(request)
        if found is None:
            raise self.missing(self.container_noun)
        return found

    def live(self, request: web.Request, where: C) -> I:
        """The live item the route names, or 404."""
        return self._item(request, where, self.item, self.item_noun)

    def _item(self, request: web.Request, where: C, find: Callable[[C, str], I | None], noun: str) -> I:
        found = find(where, request.match_info[self.item_key])
        if found is None:
            raise self.missing(noun)
        return found

    @staticmethod
    def _answer(produce: Callable[[], Any], status: int = 200) -> web.Response:
        try:
            answer = produce()
        except ControlError as err:
            return err.response()
        return web.Response(status=204) if answer is None else web.json_response(answer, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        where = self.where(request)
        body = await self.body(request)
        return self._answer(
            lambda: self.create(state_of(request), where, body, request.match_info), self.created_status
        )

    async def _update(self, request: web.Request) -> web.Response:
        where = self.where(request)
        body = await self.body(request)
        item = self.live(request, where)
        return self._answer(lambda: self.update(state_of(request), where, item, body))

    async def _delete(self, request: web.Request) -> web.Response:
        where = self.where(request)
        item = self.live(request, where)
        return self._answer(lambda: self.delete(state_of(request), where, item))

    async def _restore(self, request: web.Request) -> web.Response:
        where = self.where(request)
        item = self._item(request, where, self.deleted_item, self.restore_noun)
        return self._answer(lambda: self.restore(state_of(request), where, item))

    async def _expire(self, request: web.Request) -> web.Response:
        where = self.where(request)
        return self._answer(lambda: self.expire(where))
