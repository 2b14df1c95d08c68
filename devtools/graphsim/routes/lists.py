"""listItem delta: ``GET /sites/{site}/lists/{list}/items/delta``.

Follows listitem-delta: the first call enumerates the list, ``?token=latest``
returns no items and the current deltaLink, a deltaLink returns the items changed
since (deleted ones with a ``deleted`` facet), and a stale token answers 410 with a
``Location`` that starts a fresh enumeration. ``$expand=fields`` adds each item's
column values.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..delta_tokens import decode_token, encode_token
from ..errors import GraphError, json_response
from ..models.lists import LIST_PATH, SpList, item_json
from ..state import SimState

RESYNC_MESSAGE = "Resync required. Replace any local items with the server's version (including deletes)."


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


ROUTES = [
    ("GET", re.compile(rf"^/{LIST_PATH}/items/(?:microsoft\.graph\.)?delta(?:\(\))?$", re.IGNORECASE), list_delta)
]
