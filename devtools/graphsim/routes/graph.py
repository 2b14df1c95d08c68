"""The ``/v1.0`` dispatcher: bearer-token check, the token's tenant, its faults, then the Graph handlers.

Every request is served from the state of its token's tenant (``tid``), so two tenants'
equal paths (``users``, ``drives/{id}/root``) never meet; a token of a tenant that is unknown
or has no consent now answers 401 (tenants.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web

from ..errors import GraphError, error_response, json_response, request_ids
from ..models.drives import Drive
from ..state import STATE, SimState
from . import content, directory, lists, outlook
from . import subscriptions as subs
from .delta import handle_delta, token_from
from .render import drive_json, item_json

log = logging.getLogger("graphsim.graph")

Handler = Callable[[web.Request, SimState, re.Match[str], dict[str, Any]], Awaitable[web.Response]]
_DRIVE = r"(?:drives/(?P<d>[^/]+)|(?P<kind>users|sites)/(?P<key>[^/]+)/drive)"


def _drive(state: SimState, m: re.Match[str]) -> Drive:
    drive = state.drives.find("drives", m["d"]) if m["d"] else state.drives.find(m["kind"].lower(), m["key"])
    if drive is None:
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    return drive


async def get_drive(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET a drive by id, user or site."""
    return json_response(request, drive_json(_drive(state, m), state.graph_url))


async def get_item(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET a driveItem (``root`` or ``items/{id}``)."""
    drive = _drive(state, m)
    item = state.drives.item(drive, m["item"] or "root")
    if item is None:
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    body = {
        "@odata.context": f"{state.graph_url}/$metadata#drives('{drive.id}')/items/$entity",
        **item_json(state.drives, drive, item),
        **content.download_field(request, state, drive, item),
    }
    return json_response(request, body)


async def delta(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET .../root/delta in all its spellings."""
    drive = _drive(state, m)
    item_id = m["item"]
    if item_id and item_id != "root" and item_id != drive.root_id:
        raise GraphError(400, "invalidRequest", "Delta is only supported on the root folder of a drive.")
    return await handle_delta(request, state, drive, token_from(request, m["fn"]))


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"^/subscriptions/?$"), subs.list_subs),
    ("POST", re.compile(r"^/subscriptions/?$"), subs.create),
    ("GET", re.compile(r"^/subscriptions/(?P<id>[^/]+)$"), subs.get_sub),
    ("PATCH", re.compile(r"^/subscriptions/(?P<id>[^/]+)$"), subs.patch_sub),
    ("DELETE", re.compile(r"^/subscriptions/(?P<id>[^/]+)$"), subs.delete_sub),
    ("POST", re.compile(r"^/subscriptions/(?P<id>[^/]+)/reauthorize$"), subs.reauthorize),
    ("GET", re.compile(rf"^/{_DRIVE}/(?:root|items/(?P<item>[^/]+))/(?P<fn>delta(?:\(.*\))?)$", re.IGNORECASE), delta),
    ("GET", re.compile(r"^/drives/(?P<d>[^/]+)/items/(?P<item>[^/]+)/content$", re.IGNORECASE), content.get_content),
    ("GET", re.compile(rf"^/{_DRIVE}/(?:root|items/(?P<item>[^/]+))$", re.IGNORECASE), get_item),
    ("GET", re.compile(rf"^/{_DRIVE}$", re.IGNORECASE), get_drive),
    *lists.ROUTES,
    *directory.ROUTES,
    *outlook.ROUTES,
]


def _authenticate(request: web.Request, state: SimState) -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        return state.issuer.verify(token.strip())
    except jwt.ExpiredSignatureError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        ) from exc
    except jwt.PyJWTError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        ) from exc


async def graph_entry(request: web.Request) -> web.Response:
    """Entry point for every ``/v1.0`` request."""
    home = request.app[STATE]
    request_ids(request)
    path = request.path[len("/v1.0") :] or "/"
    try:
        try:
            claims = _authenticate(request, home)
            state = home.tenants.graph_state(claims)
        except GraphError:
            # Counted in the home tenant's stats: no tenant of the simulator's took the request.
            home.graph_requests += 1
            home.auth_failures += 1
            raise
        state.graph_requests += 1
        state.faults.check_storm(state.clock.now())
        state.faults.check(request.method, path)
        allowed = False
        for method, pattern, handler in ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            if method != request.method:
                allowed = True
                continue
            return await handler(request, state, m, claims)
        if allowed:
            raise GraphError(405, "BadRequest", f"The HTTP method '{request.method}' is not allowed.")
        segment = path.strip("/").split("/")[-1]
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
    except GraphError as err:
        if err.status >= 500 or err.status == 429:
            log.info("%s %s -> %s (injected or throttled)", request.method, path, err.status)
        return error_response(request, err)
