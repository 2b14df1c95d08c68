"""HTTPS routes of the identity platform stand-in: discovery documents, the token endpoint, admin consent.

Every route is per tenant authority (``/{tenant}/...``): the token endpoint issues tokens whose
``tid`` and issuer are that tenant's, for any tenant that has consented (tenants.py); the admin
consent endpoint is consent.py's. Errors follow Entra ID's OAuth shape (``error``,
``error_description`` starting with an AADSTS code, ``error_codes``, ``trace_id``,
``correlation_id``). Secrets and tokens are never logged.
"""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .assertions import GRAPH_SCOPES, assertion_failure, assertion_token
from .auth import TokenIssuer
from .config import SimConfig
from .consent import AdminConsent
from .managed_identity import ManagedIdentity
from .tenants import GENERIC, Tenants, app_not_found, unknown_tenant

log = logging.getLogger("graphsim.identity")


def _aad_error(status: int, error: str, code: int, text: str) -> web.Response:
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    desc = f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {stamp}"
    body = {
        "error": error,
        "error_description": desc,
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.json_response(body, status=status)


class IdentityRoutes:
    """Handlers for discovery, JWKS and the client-credentials token endpoint."""

    def __init__(self, config: SimConfig, issuer: TokenIssuer, tenants: Tenants[Any]) -> None:
        self.config = config
        self.issuer = issuer
        self.tenants = tenants
        self.authority = ""  # set once the TLS port is known
        self.tokens_issued = 0
        self.token_failures = 0
        self.consent = AdminConsent(config, tenants)
        # The deployment's managed identity, whose endpoint runs on the plain-HTTP app (server.py).
        self.managed = ManagedIdentity(config, issuer)

    def add_to(self, app: web.Application) -> None:
        """Register the routes on the TLS application."""
        app.router.add_get("/common/discovery/instance", self.instance_discovery)
        app.router.add_get("/{tenant}/v2.0/adminconsent", self.consent.handle)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self.openid)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self.keys)
        app.router.add_get("/{tenant}/discovery/keys", self.keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)

    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in GENERIC or self.tenants.get(tenant) is not None

    async def instance_discovery(self, request: web.Request) -> web.Response:
        """MSAL's instance discovery document, naming only this authority."""
        host = self.authority.split("://", 1)[1]
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self.authority}/{self.config.tenant_id}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    async def openid(self, request: web.Request) -> web.Response:
        """OpenID Connect discovery for a tenant."""
        tenant = request.match_info["tenant"]
        if not self._tenant_ok(tenant):
            return _aad_error(400, "invalid_tenant", *unknown_tenant(tenant)[2:])
        record = self.tenants.get(tenant)
        # A generic authority's document names the home tenant, as before; a tenant's names that tenant.
        t, base = (record.id if record is not None else self.config.tenant_id), self.authority
        doc: dict[str, Any] = {
            "token_endpoint": f"{base}/{t}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{t}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{t}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{t}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{t}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return web.json_response(doc)

    async def keys(self, request: web.Request) -> web.Response:
        """JWKS with the token signing key (one key for every tenant, as Entra's)."""
        tenant = request.match_info["tenant"]
        if not self._tenant_ok(tenant):
            return _aad_error(400, "invalid_tenant", *unknown_tenant(tenant)[2:])
        record = self.tenants.get(tenant)
        return web.json_response(self.issuer.jwks(record.id if record is not None else None))

    def _assertion(self, tenant: str, form: Any) -> web.Response:
        """The client_assertion grant (a certificate's JWT or a federated credential's token): assertions.py."""
        failure = assertion_failure(self.config, self.issuer, self.authority, tenant, form, self.tenants, self.managed)
        if failure is None:
            failure = self.tenants.token_refusal(tenant, str(form.get("client_id", "")))
        if failure is not None:
            self.token_failures += 1
            log.info("assertion token request refused: %s", failure[0])
            return _aad_error(*failure)
        self.tokens_issued += 1
        record = self.tenants.get(tenant)
        return web.json_response(assertion_token(self.config, self.issuer, form, record.id if record else None))

    async def token(self, request: web.Request) -> web.Response:
        """Client-credentials grant; other grants answer unsupported_grant_type."""
        tenant = request.match_info["tenant"]
        form = await request.post()
        if form.get("client_assertion"):
            return self._assertion(tenant, form)
        grant = str(form.get("grant_type", ""))
        client_id = str(form.get("client_id", ""))
        secret = str(form.get("client_secret", ""))
        scope = str(form.get("scope", ""))
        if request.headers.get("Authorization", "").lower().startswith("basic "):
            raw = base64.b64decode(request.headers["Authorization"][6:]).decode()
            client_id, _, secret = raw.partition(":")
        failure = self._check(tenant, grant, client_id, secret, scope)
        if failure is not None:
            self.token_failures += 1
            log.info("token request refused: %s", failure.status)
            return failure
        self.tokens_issued += 1
        record = self.tenants.get(tenant)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.config.token_lifetime_seconds,
                "ext_expires_in": self.config.token_lifetime_seconds,
                "access_token": self.issuer.issue(tenant=record.id if record is not None else None),
            }
        )

    def _check(self, tenant: str, grant: str, client_id: str, secret: str, scope: str) -> web.Response | None:
        if self.tenants.get(tenant) is None:
            return _aad_error(*unknown_tenant(tenant))
        if grant != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if client_id != self.config.client_id:
            return _aad_error(*app_not_found(client_id, tenant))
        refused = self.tenants.token_refusal(tenant, client_id)
        if refused is not None:
            return _aad_error(*refused)
        if not secret:
            return _aad_error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        if secret != self.config.client_secret:
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret "
                f"ID, for a secret added to app '{client_id}'.",
            )
        scopes = scope.split()
        if not any(s in GRAPH_SCOPES for s in scopes):
            return _aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client "
                "credential flows must have a scope value with /.default "
                "suffixed to the resource identifier (application ID URI).",
            )
        return None
