"""The admin consent endpoint, ``GET /{tenant}/v2.0/adminconsent``, on the identity platform stand-in.

As Microsoft documents it (learn ``entra/identity-platform/v2-admin-consent``): the request
carries ``client_id``, ``redirect_uri``, ``scope`` (all required) and ``state`` (recommended);
an admin signs in and approves, and the platform redirects (302) to ``redirect_uri`` with
``admin_consent=True&tenant={id}&scope=...&state=...``, or, when the admin refuses, with
``admin_consent=True&error=consent_required&error_description=AADSTS65004: The resource
owner or authorization server denied the request. ...&state=...``. A request without
``client_id`` or ``redirect_uri``, or for another app, gets an error page (400): the platform
never redirects where it cannot trust.

No admin signs in here; who consents, and whether they accept, is decided, in this order:
the sim-only query parameter ``sim_tenant`` (accepts, for that tenant); the decision the
control API queued (``POST /_sim/consent``, used by this one request); the tenant in the
path unless it is ``organizations`` or ``common``; else the home tenant. Accepting registers
the tenant as consented (tenants.py); a denial registers nothing.
"""

from __future__ import annotations

import html
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from .config import SimConfig
from .tenants import GENERIC, TENANT_ID, ConsentDecision, Tenants, app_not_found

log = logging.getLogger("graphsim.consent")
DENIED_TEXT = {
    # The v2 admin consent page's documented error response.
    "consent_required": "AADSTS65004: The resource owner or authorization server denied the request.",
    # What the platform answers when the admin presses Cancel (with error_subcode=cancel).
    "access_denied": "AADSTS65004: User declined to consent to access the app.",
}


def _trace() -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}\r\nTimestamp: {stamp}"


def _error_page(code: int, text: str) -> web.Response:
    """The platform's sign-in error page (it does not redirect to a URI it cannot trust)."""
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        f"<h1>Sorry, but we're having trouble signing you in.</h1><p>AADSTS{code}: {html.escape(text)}</p>"
        "</body></html>"
    )
    return web.Response(status=400, text=body, content_type="text/html")


def _redirect(redirect_uri: str, params: list[tuple[str, str]]) -> web.Response:
    """302 to ``redirect_uri`` with ``params`` added to its own query."""
    parts = urlsplit(redirect_uri)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + params)
    return web.Response(status=302, headers={"Location": urlunsplit(parts._replace(query=query))})


def _missing(name: str) -> web.Response:
    return _error_page(900144, f"The request body must contain the following parameter: '{name}'.")


class AdminConsent:
    """The admin consent handler; decisions queued by the control API live in the tenant registry."""

    def __init__(self, config: SimConfig, tenants: Tenants[Any]) -> None:
        self.config = config
        self.tenants = tenants
        self.granted = 0
        self.denied = 0

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /{tenant}/v2.0/adminconsent?client_id&redirect_uri&scope&state[&sim_tenant]``."""
        query, path_tenant = request.query, request.match_info["tenant"]
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        if not client_id:
            return _missing("client_id")
        if client_id != self.config.client_id:
            return _error_page(*app_not_found(client_id, path_tenant)[2:])
        if not redirect_uri:
            return _missing("redirect_uri")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc or target.fragment:
            return _error_page(
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{client_id}'.",
            )
        state = [("state", query["state"])] if "state" in query else []
        scope = query.get("scope", "")
        if not scope:
            text = "AADSTS900144: The request body must contain the following parameter: 'scope'."
            params = [("error", "invalid_request"), ("error_description", text + _trace())]
            return _redirect(redirect_uri, params + state)
        sim_tenant = query.get("sim_tenant")
        if sim_tenant is not None and (not TENANT_ID.match(sim_tenant) or sim_tenant.lower() in GENERIC):
            return _error_page(90002, f"Tenant '{sim_tenant}' not found.")
        decision = ConsentDecision(True, sim_tenant) if sim_tenant else self.tenants.next_decision()
        decision = decision or ConsentDecision(True)
        if not decision.accept:
            self.denied += 1
            extra = [("error_subcode", "cancel")] if decision.error == "access_denied" else []
            description = DENIED_TEXT.get(decision.error, DENIED_TEXT["consent_required"]) + _trace()
            log.info("admin consent denied (%s)", decision.error)
            params = [("admin_consent", "True"), ("error", decision.error), *extra, ("error_description", description)]
            return _redirect(redirect_uri, params + state)
        tenant = decision.tenant or (path_tenant if path_tenant.lower() not in GENERIC else self.tenants.home_id)
        if not TENANT_ID.match(tenant):
            return _error_page(90002, f"Tenant '{tenant}' not found.")
        record = self.tenants.consent(tenant)
        self.granted += 1
        log.info("admin consent granted by tenant %s", record.id)
        return _redirect(redirect_uri, [("admin_consent", "True"), ("tenant", record.id), ("scope", scope), *state])
