"""SharePoint's own REST API for list webhooks, as the simulator plays it.

Sites live on the simulator's plain-HTTP listener (``http://127.0.0.1:{port}/sites/{name}``:
plain http is allowed on loopback only). What it follows (sp-dev-docs docs/apis/webhooks):
- subscriptions on ``/_api/web/lists('{id}')/subscriptions``: at most 180 days; creation
  first POSTs ``{notificationUrl}?validationtoken={token}`` and needs the token echoed as
  text/plain within 5 s; the answer's ``resource`` is the bare list id;
- notifications ``{"value": [...]}`` with subscriptionId, clientState, expirationDateTime,
  resource (the list id), tenantId, siteUrl (server-relative) and webId, no change details;
  one POST per URL carries what queued meanwhile; a failed delivery is retried 5 times,
  5 minutes apart (both configurable for tests);
- change tokens ``1;3;{list-id};{ticks};{change number}``, ``CurrentChangeToken`` and
  ``GetChanges`` (a ChangeQuery with ChangeTokenStart and FetchLimit); a token older than
  the change log (after ``expire-tokens``) raises SPException -2130575172;
- items with fields, ``UniqueId`` and ``owshiddenversion``, paged with ``$top`` and
  ``odata.nextLink``;
- app-only access needs a token from a certificate (a signed client assertion): the
  token endpoint's client_assertion grant is here too, called by identity.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .auth import TokenIssuer
from .clock import graph_time, item_time, parse_time
from .config import SimConfig
from .state import SimState

log = logging.getLogger("graphsim.sharepoint")
MAX_LIFETIME = timedelta(days=180)
HANDSHAKE_SECONDS = 5.0
EXPIRED_CODE = "-2130575172, Microsoft.SharePoint.SPException"
EXPIRED_TEXT = "The changeToken refers to a time before the start of the current change log."
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# .NET ticks at the Unix epoch: change tokens carry ticks.
_EPOCH_TICKS = 621355968000000000
_LIST = re.compile(r"^lists\('(?P<list>[0-9a-fA-F-]{36})'\)(?P<rest>/.*)?$")
_SUB = re.compile(r"^/subscriptions\('(?P<sub>[^']+)'\)$")
_ITEM = re.compile(r"^/items\((?P<item>\d+)\)$")

routes = web.RouteTableDef()


class SharePointError(Exception):
    """An SPException, answered as JSON light's ``odata.error``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        body = {"odata.error": {"code": self.code, "message": {"lang": "en-US", "value": self.message}}}
        return web.json_response(body, status=self.status)


def _not_found(what: str) -> SharePointError:
    return SharePointError(404, "-2147024894, System.IO.FileNotFoundException", f"{what} does not exist.")


@dataclass
class SPItem:
    """A list item: its integer id, its UniqueId and fields."""

    id: int
    unique_id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            **self.fields,
            "Id": self.id,
            "ID": self.id,
            "UniqueId": self.unique_id,
            "GUID": str(uuid.uuid5(uuid.NAMESPACE_OID, self.unique_id)),
            "Created": item_time(self.created),
            "Modified": item_time(self.modified),
            "owshiddenversion": self.version,
            "OData__UIVersionString": f"{self.version}.0",
        }


@dataclass
class Change:
    """One change log entry."""

    number: int
    item_id: int
    unique_id: str
    change_type: int
    time: datetime


@dataclass
class SPSubscription:
    """A list webhook subscription."""

    id: str
    list_id: str
    notification_url: str
    client_state: str | None
    expiration: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "clientState": self.client_state,
            "expirationDateTime": graph_time(self.expiration),
            "notificationUrl": self.notification_url,
            "resource": self.list_id,
            "resourceData": None,
        }


@dataclass
class SPList:
    """A list or library with its items, change log and subscriptions."""

    id: str
    site: str
    items: dict[int, SPItem] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    number: int = 0
    log_start: int = 0  # tokens before this change number have expired
    next_item: int = 1
    subs: dict[str, SPSubscription] = field(default_factory=dict)
    recycled: dict[int, SPItem] = field(default_factory=dict)  # the recycle bin

    def token(self, number: int, moment: datetime) -> str:
        ticks = _EPOCH_TICKS + int(moment.timestamp() * 10_000_000)
        return f"1;3;{self.id};{ticks};{number}"


@dataclass
class SPStats:
    """Counters for the control API."""

    handshakes: int = 0
    deliveries: int = 0
    delivered_items: int = 0
    failures: int = 0
    dropped: int = 0
    tokens_issued: int = 0
    token_failures: int = 0
    requests: int = 0
    auth_failures: int = 0
    get_changes: int = 0
    item_reads: int = 0


@dataclass
class _Batch:
    items: list[dict[str, Any]]
    tries: int = 0


class ClientCertificates:
    """Public certificates registered for the app, by their base64url SHA-1 and SHA-256 thumbprints."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}

    def add(self, pem: str) -> str:
        cert = x509.load_pem_x509_certificate(pem.encode())
        sha1 = _b64(cert.fingerprint(hashes.SHA1()))  # x5t is the SHA-1 thumbprint, by definition
        self.keys[sha1] = cert.public_key()
        self.keys[_b64(cert.fingerprint(hashes.SHA256()))] = cert.public_key()
        return sha1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_CERTIFICATES: weakref.WeakKeyDictionary[TokenIssuer, ClientCertificates] = weakref.WeakKeyDictionary()


def certificates_for(issuer: TokenIssuer) -> ClientCertificates:
    """The client certificates of one simulator (its identity and its SharePoint share the issuer)."""
    if issuer not in _CERTIFICATES:
        _CERTIFICATES[issuer] = ClientCertificates()
    return _CERTIFICATES[issuer]


class SharePointSim:
    """Sites, lists, subscriptions and notification delivery."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.sites: dict[str, str] = {}  # site name -> web id
        self.lists: dict[str, SPList] = {}
        self.stats = SPStats()
        self.retries = 5
        self.retry_seconds = 300.0
        self.handshake_seconds = HANDSHAKE_SECONDS
        self.base_url = ""
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> SimConfig:
        return self.state.config

    def now(self) -> datetime:
        return self.state.clock.now()

    def find(self, list_id: str) -> SPList:
        found = self.lists.get(list_id.lower())
        if found is None:
            raise _not_found("List")
        return found

    def expire(self, target: SPList) -> None:
        """SharePoint deletes a subscription once it expires."""
        now = self.now()
        for sub in [s for s in target.subs.values() if s.expiration <= now]:
            del target.subs[sub.id]

    # Changes -------------------------------------------------------------------------------

    def change(self, target: SPList, item: SPItem, change_type: int) -> None:
        target.number += 1
        target.log.append(Change(target.number, item.id, item.unique_id, change_type, self.now()))
        self._notify(target)

    def _notify(self, target: SPList) -> None:
        now = self.now()
        for sub in target.subs.values():
            if sub.expiration <= now:
                continue
            item = {
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "expirationDateTime": graph_time(sub.expiration),
                "resource": target.id,
                "tenantId": self.config.tenant_id,
                "siteUrl": f"/sites/{target.site}",
                "webId": self.sites[target.site],
            }
            first = sub.notification_url not in self._pending
            self._pending.setdefault(sub.notification_url, []).append(item)
            if first:
                self._spawn(self._flush(sub.notification_url))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, url: str) -> None:
        await asyncio.sleep(0.05)  # what queues meanwhile goes in the same POST
        batch = _Batch(self._pending.pop(url, []))
        while batch.items:
            batch.tries += 1
            if await self._post(url, batch.items):
                return
            if batch.tries > self.retries:
                self.stats.dropped += len(batch.items)
                log.info("dropped %d SharePoint notifications after %d tries", len(batch.items), batch.tries)
                return
            await asyncio.sleep(self.retry_seconds)

    async def _post(self, url: str, items: list[dict[str, Any]]) -> bool:
        self.stats.deliveries += 1
        try:
            async with self.state.session().post(
                url, json={"value": items}, timeout=aiohttp.ClientTimeout(total=self.config.delivery_timeout_seconds)
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.stats.delivered_items += len(items)
        else:
            self.stats.failures += 1
        return ok

    async def handshake(self, url: str) -> bool:
        """POST ``?validationtoken=``; True when the token came back as text/plain in time."""
        self.stats.handshakes += 1
        token = str(uuid.uuid4())
        parts = urlsplit(url)
        extra = "validationtoken=" + quote(token, safe="")
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, f"{parts.query}&{extra}".lstrip("&"), ""))
        try:
            async with self.state.session().post(
                target, data=b"", timeout=aiohttp.ClientTimeout(total=self.handshake_seconds)
            ) as resp:
                body = await resp.text()
                ctype = resp.headers.get("Content-Type", "")
                return resp.status == 200 and body == token and ctype.lower().startswith("text/plain")
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


SHAREPOINT = web.AppKey("graphsim_sharepoint", SharePointSim)


def install(app: web.Application, state: SimState) -> None:
    """Add the SharePoint REST routes and their control API to the plain-HTTP application."""
    sim = SharePointSim(state)
    app[SHAREPOINT] = sim
    app.router.add_routes(routes)
    app.router.add_route("*", "/sites/{site}/_api/{rest:.*}", rest_entry)

    async def close(_: web.Application) -> None:
        await sim.close()

    app.on_cleanup.append(close)


def _sim(request: web.Request) -> SharePointSim:
    sim = request.app[SHAREPOINT]
    if not sim.base_url:
        sim.base_url = f"{request.scheme}://{request.host}"
    return sim


# The REST API ------------------------------------------------------------------------------


def _authenticate(request: web.Request, sim: SharePointSim) -> None:
    """A bearer token for this origin, issued for a certificate: SharePoint refuses secret-based app-only tokens."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Access denied.")
    try:
        claims = sim.state.issuer.verify(header[7:], audiences=[f"http://{request.host}"])
    except jwt.PyJWTError as exc:
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Invalid token.") from exc
    if claims.get("appidacr") != "2":
        raise SharePointError(401, "-2147024891, System.UnauthorizedAccessException", "Unsupported app only token.")


async def rest_entry(request: web.Request) -> web.Response:
    """Every ``/sites/{site}/_api/...`` request."""
    sim = _sim(request)
    sim.stats.requests += 1
    site = request.match_info["site"]
    rest = request.match_info["rest"]
    try:
        try:
            _authenticate(request, sim)
        except SharePointError:
            sim.stats.auth_failures += 1
            raise
        if site not in sim.sites:
            raise _not_found("Site")
        if rest == "web" and request.method == "GET":
            return web.json_response({"Id": sim.sites[site], "Url": f"{sim.base_url}/sites/{site}"})
        match = _LIST.match(rest.removeprefix("web/"))
        if match is None or not rest.startswith("web/"):
            raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Bad path.")
        target = sim.find(match["list"])
        if target.site != site:
            raise _not_found("List")
        return await _list_route(request, sim, target, match["rest"] or "")
    except SharePointError as err:
        return err.response()


async def _list_route(request: web.Request, sim: SharePointSim, target: SPList, rest: str) -> web.Response:
    method = request.method
    if rest == "/CurrentChangeToken" and method == "GET":
        return web.json_response({"StringValue": target.token(target.number, sim.now())})
    if rest == "/GetChanges" and method == "POST":
        return await _get_changes(request, sim, target)
    if rest == "/items" and method == "GET":
        return _items(request, sim, target)
    if (m := _ITEM.match(rest)) and method == "GET":
        item = target.items.get(int(m["item"]))
        sim.stats.item_reads += 1
        if item is None:
            raise SharePointError(
                404, "-2147024809, System.ArgumentException", "Item does not exist. It may have been deleted."
            )
        return web.json_response(item.to_json())
    sim.expire(target)
    if rest == "/subscriptions" and method == "GET":
        return web.json_response({"value": [s.to_json() for s in target.subs.values()]})
    if rest == "/subscriptions" and method == "POST":
        return await _create_subscription(request, sim, target)
    if m := _SUB.match(rest):
        sub = target.subs.get(m["sub"])
        if sub is None:
            raise _not_found("Subscription")
        if method == "GET":
            return web.json_response(sub.to_json())
        if method == "DELETE":
            del target.subs[sub.id]
            return web.Response(status=204)
        if method == "PATCH":
            body = await _body(request)
            sub.expiration = _expiry(sim, body.get("expirationDateTime"))
            if isinstance(body.get("notificationUrl"), str):
                sub.notification_url = body["notificationUrl"]
            return web.Response(status=204)
    raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Bad request.")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SharePointError(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", "Invalid JSON.")
    return body


def _expiry(sim: SharePointSim, value: Any) -> datetime:
    try:
        expiry = parse_time(str(value))
    except ValueError:
        raise SharePointError(400, "-1, System.ArgumentException", "Invalid expirationDateTime.") from None
    now = sim.now()
    if expiry <= now or expiry > now + MAX_LIFETIME:
        raise SharePointError(
            400, "-1, System.ArgumentException", "The expiration date must be within 180 days from now."
        )
    return expiry


async def _create_subscription(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    body = await _body(request)
    url = body.get("notificationUrl")
    if not isinstance(url, str) or not url:
        raise SharePointError(400, "-1, System.ArgumentException", "notificationUrl is required.")
    expiry = _expiry(sim, body.get("expirationDateTime"))
    if not await sim.handshake(url):
        raise SharePointError(400, "-1, System.InvalidOperationException", "Failed to validate the notification URL.")
    state = body.get("clientState")
    sub = SPSubscription(str(uuid.uuid4()), target.id, url, state if isinstance(state, str) else None, expiry)
    target.subs[sub.id] = sub
    return web.json_response(sub.to_json(), status=201)


async def _get_changes(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    sim.stats.get_changes += 1
    body = await _body(request)
    query = body.get("query")
    if not isinstance(query, dict):
        raise SharePointError(400, "-1, System.ArgumentException", "query is required.")
    start = query.get("ChangeTokenStart")
    text = start.get("StringValue") if isinstance(start, dict) else None
    number = _token_number(text, target) if text else target.log_start
    if number < target.log_start:
        # SharePoint answers this SPException with an undocumented status; 500 here.
        raise SharePointError(500, EXPIRED_CODE, EXPIRED_TEXT)
    limit = query.get("FetchLimit")
    limit = limit if isinstance(limit, int) and limit > 0 else 1000
    wanted = {1: "Add", 2: "Update", 3: "DeleteObject"}
    rows = [
        c for c in target.log if c.number > number and (c.change_type not in wanted or query.get(wanted[c.change_type]))
    ][:limit]
    return web.json_response({"value": [_change_json(sim, target, c) for c in rows]})


def _token_number(text: str, target: SPList) -> int:
    parts = text.split(";")
    if len(parts) != 5 or parts[2].lower() != target.id or not parts[4].isdigit():
        raise SharePointError(400, "-1, System.ArgumentException", "Invalid change token.")
    return int(parts[4])


def _change_json(sim: SharePointSim, target: SPList, change: Change) -> dict[str, Any]:
    return {
        "ChangeToken": {"StringValue": target.token(change.number, change.time)},
        "ChangeType": change.change_type,
        "SiteId": sim.sites[target.site],
        "Time": item_time(change.time),
        "ItemId": change.item_id,
        "ListId": target.id,
        "UniqueId": change.unique_id,
        "WebId": sim.sites[target.site],
    }


def _items(request: web.Request, sim: SharePointSim, target: SPList) -> web.Response:
    top_text = request.query.get("$top", "100")
    top = int(top_text) if top_text.isdigit() and int(top_text) > 0 else 100
    skip = request.query.get("$skiptoken", "")
    after = int(skip.rsplit("=", 1)[1]) if skip.startswith("Paged=TRUE&p_ID=") and skip[16:].isdigit() else 0
    ids = sorted(i for i in target.items if i > after)
    page = ids[:top]
    body: dict[str, Any] = {"value": [target.items[i].to_json() for i in page]}
    if len(ids) > top:
        select = quote(request.query.get("$select", "*"), safe="*,")
        skiptoken = quote(f"Paged=TRUE&p_ID={page[-1]}", safe="")
        body["odata.nextLink"] = (
            f"{sim.base_url}/sites/{target.site}/_api/web/lists('{target.id}')/items"
            f"?%24skiptoken={skiptoken}&%24select={select}&%24top={top}"
        )
    return web.json_response(body)


# The token endpoint's client_assertion grant (called by identity.py) ------------------------


def assertion_failure(
    config: SimConfig, issuer: TokenIssuer, authority: str, tenant: str, form: Any
) -> tuple[int, str, int, str] | None:
    """Why a client_assertion request fails, as (status, error, AADSTS code, text); None when it is valid."""
    if tenant.lower() != config.tenant_id.lower():
        return 400, "invalid_request", 90002, f"Tenant '{tenant}' not found."
    if str(form.get("grant_type", "")) != "client_credentials":
        return 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
    if str(form.get("client_assertion_type", "")) != ASSERTION_TYPE:
        return 400, "invalid_request", 700023, "client_assertion_type must be jwt-bearer."
    client_id = str(form.get("client_id", ""))
    if client_id != config.client_id:
        return 400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found."
    assertion = str(form.get("client_assertion", ""))
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return 401, "invalid_client", 50012, "The client assertion is not a JWT."
    thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
    key = certificates_for(issuer).keys.get(thumbprint)
    if key is None:
        return 401, "invalid_client", 700027, "The certificate with the given thumbprint is not registered."
    token_url = f"{authority}/{config.tenant_id}/oauth2/v2.0/token"
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256", "PS256"],
            audience=[token_url, f"{authority}/{tenant}/oauth2/v2.0/token"],
            issuer=client_id,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.PyJWTError as exc:
        return 401, "invalid_client", 700027, f"Client assertion failed signature or claims validation ({exc})."
    if claims.get("sub") != client_id:
        return 401, "invalid_client", 700021, "The client assertion's subject is not the client."
    scope = str(form.get("scope", ""))
    if not _sharepoint_scope(scope):
        return 400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
    return None


def _sharepoint_scope(scope: str) -> bool:
    """A SharePoint origin's /.default: https on a sharepoint.com host, or http on loopback (the simulator)."""
    if not scope.endswith("/.default") or " " in scope:
        return False
    parts = urlsplit(scope.removesuffix("/.default"))
    if parts.path or not parts.hostname:
        return False
    if parts.scheme == "http":
        return parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "https" and parts.hostname.endswith(".sharepoint.com")


def assertion_token(config: SimConfig, issuer: TokenIssuer, form: Any) -> dict[str, Any]:
    """The token response for a valid assertion: an app-only token for the SharePoint origin asked for."""
    audience = str(form.get("scope", "")).removesuffix("/.default")
    return {
        "token_type": "Bearer",
        "expires_in": config.token_lifetime_seconds,
        "ext_expires_in": config.token_lifetime_seconds,
        "access_token": issuer.issue(audience=audience, certificate=True),
    }


# The control API -----------------------------------------------------------------------------


def _control(request: web.Request) -> SharePointSim:
    return _sim(request)


async def _control_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    return body if isinstance(body, dict) else {}


@routes.post("/_sim/sharepoint/sites")
async def create_site(request: web.Request) -> web.Response:
    """A site: {"name"} -> {"url", "webId"}."""
    sim = _control(request)
    name = str((await _control_body(request)).get("name") or f"site{len(sim.sites) + 1}")
    sim.sites.setdefault(name, str(uuid.uuid4()))
    return web.json_response({"url": f"{sim.base_url}/sites/{name}", "webId": sim.sites[name]})


@routes.post("/_sim/sharepoint/lists")
async def create_list(request: web.Request) -> web.Response:
    """A list on a site: {"site", "id"?} -> {"id"}."""
    sim = _control(request)
    body = await _control_body(request)
    site = str(body.get("site") or "")
    if site not in sim.sites:
        return web.json_response({"error": f"no site {site!r}"}, status=404)
    list_id = str(uuid.UUID(str(body.get("id") or uuid.uuid4())))
    sim.lists.setdefault(list_id, SPList(list_id, site))
    return web.json_response({"id": list_id})


def _control_list(request: web.Request) -> SPList:
    sim = _control(request)
    found = sim.lists.get(request.match_info["list"].lower())
    if found is None:
        raise web.HTTPNotFound(text="no such list")
    return found


@routes.post("/_sim/sharepoint/lists/{list}/items")
async def create_item(request: web.Request) -> web.Response:
    """Add an item: {"fields": {...}} -> the item."""
    sim, target = _control(request), _control_list(request)
    fields = (await _control_body(request)).get("fields") or {}
    now = sim.now()
    item = SPItem(target.next_item, str(uuid.uuid4()), dict(fields), now, now)
    target.next_item += 1
    target.items[item.id] = item
    sim.change(target, item, 1)
    return web.json_response(item.to_json())


@routes.patch("/_sim/sharepoint/lists/{list}/items/{item}")
async def update_item(request: web.Request) -> web.Response:
    """Change an item's fields: {"fields": {...}} -> the item."""
    sim, target = _control(request), _control_list(request)
    item = target.items.get(int(request.match_info["item"]))
    if item is None:
        raise web.HTTPNotFound(text="no such item")
    item.fields.update((await _control_body(request)).get("fields") or {})
    item.version += 1
    item.modified = sim.now()
    sim.change(target, item, 2)
    return web.json_response(item.to_json())


@routes.delete("/_sim/sharepoint/lists/{list}/items/{item}")
async def delete_item(request: web.Request) -> web.Response:
    """Delete an item (to the recycle bin: the change log says DeleteObject)."""
    sim, target = _control(request), _control_list(request)
    item = target.items.pop(int(request.match_info["item"]), None)
    if item is None:
        raise web.HTTPNotFound(text="no such item")
    target.recycled[item.id] = item
    sim.change(target, item, 3)
    return web.json_response({"ok": True})


@routes.post("/_sim/sharepoint/lists/{list}/items/{item}/restore")
async def restore_item(request: web.Request) -> web.Response:
    """Restore an item from the recycle bin (the change log says Restore, ChangeType 7) -> the item."""
    sim, target = _control(request), _control_list(request)
    item = target.recycled.pop(int(request.match_info["item"]), None)
    if item is None:
        raise web.HTTPNotFound(text="no such recycled item")
    item.version += 1
    item.modified = sim.now()
    target.items[item.id] = item
    sim.change(target, item, 7)
    return web.json_response(item.to_json())


@routes.post("/_sim/sharepoint/lists/{list}/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Trim the change log: every token issued so far is now older than its start."""
    target = _control_list(request)
    target.log_start = target.number + 1
    target.log = []
    return web.json_response({"ok": True})


@routes.post("/_sim/sharepoint/lists/{list}/quiet")
async def quiet_change(request: web.Request) -> web.Response:
    """Delete an item without notifying (a lost notification), to be found by a resync."""
    target = _control_list(request)
    body = await _control_body(request)
    target.items.pop(int(body.get("item") or 0), None)
    return web.json_response({"ok": True})


@routes.get("/_sim/sharepoint/subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    """Every list's subscriptions, with their list id."""
    sim = _control(request)
    for target in sim.lists.values():
        sim.expire(target)
    return web.json_response([{**s.to_json(), "listId": t.id} for t in sim.lists.values() for s in t.subs.values()])


@routes.delete("/_sim/sharepoint/subscriptions/{sub}")
async def drop_subscription(request: web.Request) -> web.Response:
    """Lose a subscription, as SharePoint may."""
    sim = _control(request)
    for target in sim.lists.values():
        if target.subs.pop(request.match_info["sub"], None) is not None:
            return web.json_response({"ok": True})
    raise web.HTTPNotFound(text="no such subscription")


@routes.post("/_sim/sharepoint/lists/{list}/subscriptions")
async def add_subscription(request: web.Request) -> web.Response:
    """A subscription made by someone else (no handshake): {"notificationUrl", "clientState"?}."""
    sim, target = _control(request), _control_list(request)
    body = await _control_body(request)
    state = body.get("clientState")
    sub = SPSubscription(
        str(uuid.uuid4()),
        target.id,
        str(body.get("notificationUrl") or ""),
        state if isinstance(state, str) else None,
        sim.now() + timedelta(days=30),
    )
    target.subs[sub.id] = sub
    return web.json_response(sub.to_json())


@routes.post("/_sim/sharepoint/certificates")
async def register_certificate(request: web.Request) -> web.Response:
    """Register the app's public certificate: {"pem"} -> {"thumbprint"} (base64url SHA-1)."""
    sim = _control(request)
    pem = str((await _control_body(request)).get("pem") or "")
    return web.json_response({"thumbprint": certificates_for(sim.state.issuer).add(pem)})


@routes.post("/_sim/sharepoint/delivery")
async def delivery(request: web.Request) -> web.Response:
    """Delivery options: {"retries", "retrySeconds", "handshakeSeconds"}."""
    sim = _control(request)
    body = await _control_body(request)
    sim.retries = int(body.get("retries", sim.retries))
    sim.retry_seconds = float(body.get("retrySeconds", sim.retry_seconds))
    sim.handshake_seconds = float(body.get("handshakeSeconds", sim.handshake_seconds))
    return web.json_response({"ok": True})


@routes.get("/_sim/sharepoint/stats")
async def stats(request: web.Request) -> web.Response:
    """Counters: handshakes, deliveries, failures, drops, token grants, REST requests."""
    sim = _control(request)
    s = sim.stats
    return web.json_response(
        {
            "handshakes": s.handshakes,
            "deliveries": s.deliveries,
            "deliveredItems": s.delivered_items,
            "failures": s.failures,
            "dropped": s.dropped,
            "requests": s.requests,
            "authFailures": s.auth_failures,
            "getChanges": s.get_changes,
            "itemReads": s.item_reads,
            "pending": len(sim._pending),
        }
    )
