"""HTTP triggers: route requests to functions and map their responses."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web

from devtools.host.invoker import Invoker
from devtools.host.loader import FunctionSpec
from devtools.host.routing import Route, compile_route, parse_query
from devtools.host.settings import HostConfigError

log = logging.getLogger("devtools.host")

MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's default request body limit (100 MB)
# The app setting that changes it (learn.microsoft.com, "App settings reference for Azure Functions";
# MicrosoftDocs/azure-docs, articles/azure-functions/functions-app-settings.md), in bytes.
BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
_CHUNK = 64 * 1024
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def body_limit(environ: Mapping[str, str]) -> int:
    """The request body limit, from FUNCTIONS_REQUEST_BODY_SIZE_LIMIT or the host's default."""
    text = environ.get(BODY_LIMIT_SETTING, "").strip()
    if not text:
        return MAX_BODY_BYTES
    if not text.isdigit() or int(text) < 1:
        raise HostConfigError(f"{BODY_LIMIT_SETTING} must be a positive number of bytes, not {text!r}")
    return int(text)


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is over ``limit`` bytes.

    Refused on its Content-Length before a byte is read; a body without one (chunked) is
    read no further than the limit and one chunk, never buffered whole.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def too_large(limit: int) -> web.Response:
    """413 for a body over ``limit``; the connection closes, as the rest of the body is never read."""
    response = web.Response(status=413, text=f"request body exceeds {limit} bytes")
    response.force_close()
    return response


@dataclass(frozen=True)
class HttpFunction:
    """An HTTP-triggered function with its compiled route and allowed methods."""

    spec: FunctionSpec
    route: Route
    methods: frozenset[str] | None
    auth_level: str

    def allows(self, method: str) -> bool:
        """True when the function accepts this method (no list means all)."""
        return self.methods is None or method.upper() in self.methods


def http_function(spec: FunctionSpec) -> HttpFunction:
    """Index an HTTP trigger: the route defaults to the function name."""
    trigger = spec.trigger
    methods = trigger.get("methods")
    return HttpFunction(
        spec=spec,
        route=compile_route(str(trigger.get("route") or spec.name)),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        auth_level=str(trigger.get("authLevel") or "function").lower(),
    )


def key_matches(request: web.Request, key: str | None) -> bool:
    """The host's key check: `code` query parameter or `x-functions-key` header."""
    if key is None:
        return True
    given = request.headers.get("x-functions-key") or parse_query(raw_query(request)).get("code", "")
    return hmac.compare_digest(given.encode(), key.encode())


def raw_query(request: web.Request) -> str:
    """The query string as sent (aiohttp's `query_string` is already decoded)."""
    return request.raw_path.partition("?")[2]


def _join_headers(request: web.Request) -> dict[str, str]:
    # The host sends each header once, lower-cased, repeated values joined with commas.
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return {k: ",".join(v) for k, v in headers.items()}


def to_response(value: Any) -> web.StreamResponse:
    """Map what an HTTP function returned to an aiohttp response."""
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str):
        text_plain = {"Content-Type": "text/plain; charset=utf-8"}
        return web.Response(status=200, body=value.encode("utf-8"), headers=text_plain)
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse or str, not {type(value).__name__}")
    response = web.Response(status=value.status_code, body=value.get_body() or b"")
    # werkzeug Headers: items() yields every value, so repeated Set-Cookie survive.
    pairs = list(value.headers.items())
    for name, item in pairs:
        if name.lower() not in _HOP_BY_HOP:
            response.headers.add(name, item)
    if not any(name.lower() == "content-type" for name, _ in pairs):
        mimetype = value.mimetype or "text/plain"
        ctype = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
        response.headers["Content-Type"] = ctype
    return response


class HttpDispatcher:
    """Finds the function for a request, checks its key and invokes it."""

    def __init__(
        self,
        functions: Sequence[HttpFunction],
        route_prefix: str,
        invoker: Invoker,
        function_key: str | None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self._functions = sorted(functions, key=lambda f: f.route.precedence())
        self._prefix = route_prefix.strip("/")
        self._invoker = invoker
        self._key = function_key
        self._max_body = max_body
        self.accepting = True

    def _below_prefix(self, raw_path: str) -> str | None:
        path = raw_path.split("?", 1)[0].strip("/")
        if not self._prefix:
            return path
        head, _, rest = path.partition("/")
        return rest if head.lower() == self._prefix.lower() else None

    def find(self, method: str, raw_path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        """The first function whose route and methods match, with its route values."""
        path = self._below_prefix(raw_path)
        if path is None:
            return None
        for fn in self._functions:
            values = fn.route.match(path)
            if values is not None and fn.allows(method):
                return fn, values
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for every non-admin path."""
        found = self.find(request.method, request.raw_path)
        if found is None:
            # The host answers 404 for an unknown route and for a method the route does not allow.
            return web.Response(status=404)
        if not self.accepting:
            return web.Response(status=503, text="Host is shutting down")
        fn, route_values = found
        if fn.auth_level != "anonymous" and not key_matches(request, self._key):
            return web.Response(status=401)
        body = await read_body(request, self._max_body)
        if body is None:
            return too_large(self._max_body)
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_join_headers(request),
            params=parse_query(raw_query(request)),
            route_params=route_values,
            body=body,
        )
        # The reason the real host logs for HTTP invocations.
        reason = "This function was programmatically called via the host APIs."
        result = await self._invoker.invoke(fn.spec, req, reason)
        if not result.succeeded:
            return web.Response(status=500)
        try:
            return to_response(result.return_value)
        except TypeError:
            log.exception("Functions.%s returned an unusable HTTP response", fn.spec.name)
            return web.Response(status=500)
