"""The token endpoint's client_assertion grant, for Graph and SharePoint origins (called by identity.py).

Two kinds of assertion sign the app in:
- a JWT the app signs with its certificate, whose public half is registered first
  (``POST /_sim/sharepoint/certificates``; the header names it by ``x5t`` or ``x5t#S256``).
  SharePoint refuses app-only tokens got with a secret, so this is its way in; Graph takes it too;
- the deployment's managed identity's token for ``api://AzureADTokenExchange``, which the app
  registration trusts through a federated identity credential (managed_identity.py).
"""

from __future__ import annotations

import base64
import weakref
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .auth import TokenIssuer
from .config import SimConfig
from .managed_identity import ManagedIdentity
from .tenants import Tenants

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_SCOPES = frozenset({"https://graph.microsoft.com/.default", "00000003-0000-0000-c000-000000000000/.default"})


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


def assertion_failure(
    config: SimConfig,
    issuer: TokenIssuer,
    authority: str,
    tenant: str,
    form: Any,
    tenants: Tenants[Any],
    managed: ManagedIdentity | None = None,
) -> tuple[int, str, int, str] | None:
    """Why a client_assertion request fails, as (status, error, AADSTS code, text); None when it is valid.

    Whether the tenant has consented is asked after this (tenants.py, by identity.py).
    """
    if tenants.get(tenant) is None:
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
    if not thumbprint and managed is not None:
        # No certificate named: a federated credential's assertion (the managed identity's token).
        federated = managed.failure(assertion)
        return federated or _scope_failure(str(form.get("scope", "")))
    key = certificates_for(issuer).keys.get(thumbprint)
    if key is None:
        return 401, "invalid_client", 700027, "The certificate with the given thumbprint is not registered."
    token_url = f"{authority}/{tenant}/oauth2/v2.0/token"
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256", "PS256"],
            audience=[token_url, f"{authority}/{config.tenant_id}/oauth2/v2.0/token"],
            issuer=client_id,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.PyJWTError as exc:
        return 401, "invalid_client", 700027, f"Client assertion failed signature or claims validation ({exc})."
    if claims.get("sub") != client_id:
        return 401, "invalid_client", 700021, "The client assertion's subject is not the client."
    return _scope_failure(str(form.get("scope", "")))


def _scope_failure(scope: str) -> tuple[int, str, int, str] | None:
    """An app-only token is for Graph's or a SharePoint origin's /.default."""
    if scope in GRAPH_SCOPES or _sharepoint_scope(scope):
        return None
    return 400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."


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


def assertion_token(config: SimConfig, issuer: TokenIssuer, form: Any, tenant: str | None = None) -> dict[str, Any]:
    """The token response for a valid assertion: an app-only token of ``tenant`` for the origin asked for."""
    audience = str(form.get("scope", "")).removesuffix("/.default")
    return {
        "token_type": "Bearer",
        "expires_in": config.token_lifetime_seconds,
        "ext_expires_in": config.token_lifetime_seconds,
        "access_token": issuer.issue(audience=audience, certificate=True, tenant=tenant),
    }
