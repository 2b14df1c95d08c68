"""File content: ``/items/{id}/content`` (302), ``@microsoft.graph.downloadUrl``, ranged downloads.

As Graph documents, the content request answers 302 with a pre-authenticated,
short-lived download URL (no Authorization header needed), the same URL a GET of
the item gives as ``@microsoft.graph.downloadUrl``; the URL honours a single
``Range`` (206 with Content-Range). A generated file's bytes are derived from its
id, range by range, so a file of several gigabytes is served without being held.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from aiohttp import web

from ..errors import GraphError
from ..models.drives import Drive, Item
from ..state import STATE, SimState

routes = web.RouteTableDef()
_KEY = secrets.token_bytes(32)
# Graph's download URLs are valid for a few minutes.
LIFETIME_SECONDS = 600
_PIECE = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _sign(text: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(_KEY, text.encode(), hashlib.sha256).digest()[:18]).decode()


def download_url(origin: str, drive: Drive, item: Item, now: float | None = None, tenant: str = "") -> str:
    """A pre-authenticated URL for the item's current content, valid for LIFETIME_SECONDS.

    A tenant other than the home tenant is named in the signed part (the home tenant's URLs are unchanged).
    """
    expires = int((now or time.time()) + LIFETIME_SECONDS)
    text = f"{drive.id}\x1f{item.id}\x1f{expires}" + (f"\x1f{tenant}" if tenant else "")
    ident = base64.urlsafe_b64encode(text.encode()).decode()
    return f"{origin}/_download/{ident}?sig={_sign(ident)}"


def size_of(item: Item) -> int:
    """The file's length in bytes."""
    return item.size if item.synthetic else len(item.content)


def piece(item: Item, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the file; a generated file's are made for just that range."""
    if not item.synthetic:
        return item.content[start:end]
    block = hashlib.sha256(item.id.encode()).digest()  # as Item.data(), without building it whole
    offset = start % len(block)
    count = end - start
    repeated = block * ((offset + count) // len(block) + 1)
    return repeated[offset : offset + count]


def _file(state: SimState, drive_key: str, item_id: str) -> tuple[Drive, Item]:
    drive = state.drives.find("drives", drive_key)
    item = state.drives.item(drive, item_id) if drive is not None else None
    if drive is None or item is None or item.deleted:
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    if item.is_folder:
        raise GraphError(400, "invalidRequest", "Only files have content.")
    return drive, item


def _tenant_of(state: SimState) -> str:
    return "" if state.home is None else state.tenant_id


def download_field(request: web.Request, state: SimState, drive: Drive, item: Item) -> dict[str, Any]:
    """The ``@microsoft.graph.downloadUrl`` a GET of a file carries (nothing for a folder)."""
    if item.is_folder or item.deleted:
        return {}
    url = download_url(str(request.url.origin()), drive, item, tenant=_tenant_of(state))
    return {"@microsoft.graph.downloadUrl": url}


async def get_content(request: web.Request, state: SimState, m: re.Match[str], claims: dict[str, Any]) -> web.Response:
    """GET /drives/{d}/items/{i}/content: 302 to the download URL."""
    drive, item = _file(state, m["d"], m["item"])
    url = download_url(str(request.url.origin()), drive, item, tenant=_tenant_of(state))
    return web.Response(status=302, headers={"Location": url})


@routes.get("/_download/{ident}")
async def download(request: web.Request) -> web.StreamResponse:
    """The pre-authenticated download URL: no bearer token; honours one byte range."""
    ident = request.match_info["ident"]
    if not hmac.compare_digest(_sign(ident), request.query.get("sig", "")):
        return web.Response(status=401, text="invalid signature")
    drive_id, item_id, expires, *tenant = base64.urlsafe_b64decode(ident).decode().split("\x1f")
    if time.time() > int(expires):
        return web.Response(status=401, text="expired")
    state: SimState = request.app[STATE]
    record = state.tenants.get(tenant[0]) if tenant else None
    if record is not None:
        state = state.tenants.state_of(record)
    elif tenant:
        return web.Response(status=404, text="itemNotFound")
    try:
        _, item = _file(state, drive_id, item_id)
    except GraphError as err:
        return web.Response(status=err.status, text=err.code)
    size = size_of(item)
    start, end, status = 0, size, 200
    header = request.headers.get("Range")
    if header:
        match = _RANGE.match(header.strip())
        if match is None or (not match[1] and not match[2]):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]) + 1, size) if match[2] else size
        else:
            start = max(size - int(match[2]), 0)
        if start >= size or end <= start:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    response = web.StreamResponse(status=status)
    response.content_type = "application/octet-stream"
    response.content_length = end - start
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    await response.prepare(request)
    for at in range(start, end, _PIECE):
        await response.write(piece(item, at, min(at + _PIECE, end)))
    await response.write_eof()
    return response
