"""Users and groups delta: ``GET /users/delta`` and ``GET /groups/delta``.

Follows user-delta and group-delta: the first call enumerates, ``$deltaToken=latest``
returns no objects and the current deltaLink, a deltaLink returns the objects changed
since (removed ones as their id with ``@removed``), and a group's membership changes
come as ``members@delta`` (a member that left carries ``@removed``). ``$select``
limits the properties (``id`` always comes), and ``$filter=id eq '{id}'`` limits
groups delta to one group. Links carry ``$deltatoken``/``$skiptoken``. A delta
token past its lifetime answers 400 ``syncStateNotFound``, as Graph does for
directory objects.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..delta_tokens import decode_token, encode_token
from ..errors import GraphError, json_response
from ..models.directory import Collection, render
from ..state import SimState


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
