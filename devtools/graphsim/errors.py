"""Graph's error envelope and request-id headers, and SharePoint REST's ``odata.error``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from aiohttp import web

REQUEST_ID = web.RequestKey("graphsim_request_id", str)


class GraphError(Exception):
    """Raised inside Graph handlers; rendered as Graph's error JSON."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner_code: str | None = None,
        inner_extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.inner_code = inner_code
        self.inner_extra = inner_extra or {}


def request_ids(request: web.Request) -> tuple[str, str]:
    """The request-id for this call and the client-request-id (echoed if the client sent one)."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        rid = str(uuid.uuid4())
        request[REQUEST_ID] = rid
    return rid, request.headers.get("client-request-id", rid)


def error_response(request: web.Request, err: GraphError) -> web.Response:
    """Render a :class:`GraphError` the way Graph does."""
    rid, crid = request_ids(request)
    inner: dict[str, str] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": rid,
        "client-request-id": crid,
    }
    if err.inner_code:
        inner = {"code": err.inner_code, **inner}
    inner.update(err.inner_extra)
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    headers = {"request-id": rid, "client-request-id": crid, **err.headers}
    return web.Response(status=err.status, text=json.dumps(body), content_type="application/json", headers=headers)


def json_response(
    request: web.Request, body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A Graph JSON answer with request-id headers."""
    rid, crid = request_ids(request)
    all_headers = {"request-id": rid, "client-request-id": crid, **(headers or {})}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=all_headers)


def empty_response(request: web.Request, status: int = 204) -> web.Response:
    """A body-less Graph answer (204) with request-id headers."""
    rid, crid = request_ids(request)
    return web.Response(status=status, headers={"request-id": rid, "client-request-id": crid})


class SharePointError(Exception):
    """An SPException, answered as JSON light's ``odata.error``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        body = {"odata.error": {"code": self.code, "message": {"lang": "en-US", "value": self.message}}}
        return web.json_response(body, status=self.status)


def sharepoint_not_found(what: str) -> SharePointError:
    """SharePoint's 404 for a site, list or subscription that does not exist."""
    return SharePointError(404, "-2147024894, System.IO.FileNotFoundException", f"{what} does not exist.")
