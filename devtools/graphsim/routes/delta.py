"""``driveItem: delta`` on a drive's root: full enumeration, ``token=latest``, changes, paging.

A *run* is a delta request that starts a sync (no token, ``latest`` or a deltaLink
token); following an ``@odata.nextLink`` is part of the same run.  Runs and page
requests are counted per drive for the control API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ..delta_tokens import DeltaToken
from ..errors import GraphError, json_response
from ..models.drives import Drive, Item
from ..state import SimState
from .render import item_json

RESYNC_MESSAGE = (
    "Resync required. Replace any local items with the server's version "
    "(including deletes) if you're sure that the service was up to date with "
    "your local changes when you last sync'd. Upload any local changes that "
    "the server doesn't know about."
)
_FUNCTION_TOKEN = re.compile(r"^delta\((?:token=)?'?(?P<token>[^')]*)'?\)$")


def token_from(request: web.Request, fn: str) -> str | None:
    """The token from ``?token=`` or from ``delta(token='...')`` function syntax."""
    if "token" in request.query:
        return request.query["token"]
    m = _FUNCTION_TOKEN.match(unquote(fn))
    if m and m.group("token"):
        return m.group("token")
    return None


def _page_size(request: web.Request, state: SimState) -> tuple[int, str | None]:
    prefer = request.headers.get("Prefer", "")
    m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    if m and int(m.group(1)) > 0:
        return int(m.group(1)), f"odata.maxpagesize={m.group(1)}"
    top = _top(request)
    if top is not None:
        return top, None
    return state.config.page_size, None


def _top(request: web.Request) -> int | None:
    top = request.query.get("$top")
    return int(top) if top and top.isdigit() and int(top) > 0 else None


def _keeping_top(request: web.Request, link: str) -> str:
    """``link`` with the request's ``$top``: Graph keeps a delta request's query options in its links.

    "Microsoft Graph automatically encodes any specified parameters into the token portion of the
    nextLink or deltaLink URL" (GD api-reference/v1.0/api/user-delta.md, query parameters), and
    driveItem delta supports ``$top`` (GD api-reference/v1.0/api/driveitem-delta.md).
    """
    top = _top(request)
    return link if top is None else f"{link}&$top={top}"


def delta_url(state: SimState, drive: Drive, token: str | None = None) -> str:
    """Absolute delta URL of a drive, with a token or for a fresh full enumeration."""
    base = f"{state.graph_url}/drives/{drive.id}/root/delta"
    return f"{base}?token={token}" if token else base


def _stale(state: SimState, drive: Drive, tok: DeltaToken) -> bool:
    if tok.epoch != drive.token_epoch:
        return True
    lifetime = state.config.delta_token_lifetime_seconds
    return bool(lifetime) and state.clock.now().timestamp() - tok.issued > lifetime


def _by_depth(drive: Drive, items: Iterable[Item]) -> list[str]:
    """Ids of ``items``, parents first: grouped by depth, each group in the given order."""
    depths: dict[str | None, int] = {None: -1}  # folder id -> depth; the root's parent is None
    buckets: list[list[str]] = []
    for it in items:
        pid = it.parent_id
        parent_depth = depths.get(pid)
        if parent_depth is None:
            parent_depth = _folder_depth(drive, depths, pid)
        d = parent_depth + 1
        while len(buckets) <= d:
            buckets.append([])
        buckets[d].append(it.id)
    return [i for bucket in buckets for i in bucket]


def _folder_depth(drive: Drive, depths: dict[str | None, int], folder_id: str | None) -> int:
    chain: list[str] = []
    fid = folder_id
    while fid not in depths:
        assert fid is not None
        chain.append(fid)
        folder = drive.items.get(fid)
        fid = folder.parent_id if folder else None
    d = depths[fid]
    for f in reversed(chain):
        d += 1
        depths[f] = d
    return d


def _full_ids(drive: Drive) -> list[str]:
    """Every live item, parents first; one list per drive sequence, shared by its runs."""
    if drive.full_order is None or drive.full_order[0] != drive.seq:
        # ``drive.items`` is in sequence order, so each depth comes out ordered by sequence.
        ids = _by_depth(drive, (i for i in drive.items.values() if not i.deleted))
        drive.full_order = (drive.seq, ids)
    return drive.full_order[1]


def _changed_ids(drive: Drive, after: int, upto: int) -> list[str]:
    """Items stamped in ``(after, upto]``, parents first: a walk back from the newest."""
    changed: list[Item] = []
    for it in reversed(drive.items.values()):
        if it.seq <= after:
            break
        if it.seq <= upto:
            changed.append(it)
    changed.reverse()
    return _by_depth(drive, changed)


async def handle_delta(request: web.Request, state: SimState, drive: Drive, raw_token: str | None) -> web.Response:
    """Serve one delta page."""
    drive.delta_requests += 1
    now = state.clock.now().timestamp()
    # With a delta lag, changes younger than the lag are not reported yet (Graph may
    # notify before its delta shows a change); a full enumeration shows the current state
    # but its deltaLink still starts before them, so they come again in the next run.
    visible = state.drives.visible_seq(drive)
    if raw_token == "latest":
        drive.delta_runs += 1
        link = DeltaToken("d", drive.id, visible, drive.token_epoch, now).encode()
        return _page(request, state, drive, [], None, _keeping_top(request, delta_url(state, drive, link)), None)
    ids: list[str] | None
    offset, snapshot = 0, visible
    if raw_token is None:
        ids = _full_ids(drive)
        cursor = state.cursors.put(ids)
        drive.delta_runs += 1
    else:
        tok = DeltaToken.decode(raw_token)
        if tok is None or tok.drive_id != drive.id or tok.kind not in ("d", "p"):
            raise GraphError(400, "invalidRequest", "Invalid delta token.")
        if _stale(state, drive, tok):
            raise _resync(state, drive)
        if tok.kind == "d":
            snapshot = max(visible, tok.seq)
            ids = _changed_ids(drive, tok.seq, snapshot)
            cursor = state.cursors.put(ids)
            drive.delta_runs += 1
        else:
            ids, cursor, offset, snapshot = state.cursors.get(tok.cursor), tok.cursor, tok.offset, tok.seq
            if ids is None:
                # The run's cursor was evicted: like an expired token, start over.
                raise _resync(state, drive)
    size, applied = _page_size(request, state)
    page_ids = ids[offset : offset + size]
    items = [state.drives.render_source(drive, i) for i in page_ids]
    values = [item_json(state.drives, drive, it, in_delta=True) for it in items if it]
    if offset + size < len(ids):
        nxt = DeltaToken("p", drive.id, snapshot, drive.token_epoch, now, cursor, offset + size).encode()
        return _page(request, state, drive, values, _keeping_top(request, delta_url(state, drive, nxt)), None, applied)
    link = DeltaToken("d", drive.id, snapshot, drive.token_epoch, now).encode()
    return _page(request, state, drive, values, None, _keeping_top(request, delta_url(state, drive, link)), applied)


def _page(
    request: web.Request,
    state: SimState,
    drive: Drive,
    values: list[dict[str, Any]],
    next_link: str | None,
    delta_link: str | None,
    applied: str | None,
) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"{state.graph_url}/$metadata#Collection(driveItem)", "value": values}
    if next_link:
        body["@odata.nextLink"] = next_link
    if delta_link:
        body["@odata.deltaLink"] = delta_link
    headers = {"Preference-Applied": applied} if applied else None
    return json_response(request, body, headers=headers)


def _resync(state: SimState, drive: Drive) -> GraphError:
    """410 Gone: the token is stale; Location restarts a full enumeration."""
    return GraphError(
        410,
        "resyncRequired",
        RESYNC_MESSAGE,
        {"Location": delta_url(state, drive)},
        inner_code="resyncChangesApplyDifferences",
    )
