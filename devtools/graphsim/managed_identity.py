"""The Function App's managed identity, and the app registration's federated credential that trusts it.

App Service and Functions give a process ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``;
azure-identity's ManagedIdentityCredential then asks
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...&client_id=...`` with the header
``X-IDENTITY-HEADER``. This endpoint answers for one user-assigned identity (the deployment's,
as infra/app/identity.bicep makes it): a system-assigned one is not there, so a request
without its ``client_id`` is refused.

The app registration trusts that identity with a federated identity credential: issuer
``{authority}/{home tenant}/v2.0``, subject the identity's object id, audience
``api://AzureADTokenExchange``. The token endpoint (assertions.py) takes the identity's token
for that audience as a ``client_assertion`` for the app's client id, in any tenant that
consented, and refuses it forged, expired, for another audience, or of an untrusted subject,
with Entra ID's AADSTS codes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from aiohttp import web

from .auth import TokenIssuer
from .config import SimConfig

TOKEN_EXCHANGE = "api://AzureADTokenExchange"
MANAGED_IDENTITY_API = "2019-08-01"
# Managed identity tokens live about a day (Entra caches them for 24 hours).
DEFAULT_LIFETIME_SECONDS = 86400
AadError = tuple[int, str, int, str]


class ManagedIdentity:
    """The identity endpoint and the federated credentials (trusted subjects) of the app registration."""

    def __init__(self, config: SimConfig, issuer: TokenIssuer) -> None:
        self.config = config
        self.issuer = issuer
        self.header = secrets.token_urlsafe(24)
        self.authority = ""  # set once the TLS port is known
        # Subjects the app's federated credentials name; the deployment's identity by default.
        self.subjects = {config.managed_identity_object_id}
        self.lifetime_seconds = DEFAULT_LIFETIME_SECONDS
        self.tokens_issued = 0

    @property
    def issuer_url(self) -> str:
        """The issuer of the identity's tokens, and of the federated credential: the home tenant's v2 authority."""
        return f"{self.authority}/{self.config.tenant_id}/v2.0"

    def add_to(self, app: web.Application) -> None:
        """The identity endpoint, and the control of the app's federated credentials, on the plain-HTTP app."""
        app.router.add_get("/msi/token", self.token)
        app.router.add_get("/_sim/identity/federated", self.describe)
        app.router.add_put("/_sim/identity/federated", self.configure)

    async def token(self, request: web.Request) -> web.Response:
        """The identity's token for ``resource`` (App Service's 2019-08-01 protocol)."""
        query = request.query
        if not secrets.compare_digest(request.headers.get("X-IDENTITY-HEADER", ""), self.header):
            return web.json_response({"statusCode": 401, "message": "Unauthorized"}, status=401)
        if query.get("api-version") != MANAGED_IDENTITY_API:
            return web.json_response({"statusCode": 400, "message": "Unsupported api-version"}, status=400)
        resource = query.get("resource", "")
        if not resource:
            return web.json_response({"statusCode": 400, "message": "resource is required"}, status=400)
        if query.get("client_id") != self.config.managed_identity_client_id:
            # Only the user-assigned identity is attached; the system-assigned one is not enabled.
            message = "No managed identity found for the specified client_id (none is system-assigned)"
            return web.json_response({"statusCode": 400, "message": message}, status=400)
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": self.issuer_url,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_seconds,
            "azp": self.config.managed_identity_client_id,
            "appid": self.config.managed_identity_client_id,
            "idtyp": "app",
            "oid": self.config.managed_identity_object_id,
            "sub": self.config.managed_identity_object_id,
            "tid": self.config.tenant_id,
            "ver": "2.0",
        }
        self.tokens_issued += 1
        return web.json_response(
            {
                "access_token": self.issuer.sign(claims),
                "expires_on": str(now + self.lifetime_seconds),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.config.managed_identity_client_id,
            }
        )

    async def describe(self, request: web.Request) -> web.Response:
        """The identity and the app's federated credentials, for tests and the demo."""
        return web.json_response(
            {
                "clientId": self.config.managed_identity_client_id,
                "objectId": self.config.managed_identity_object_id,
                "issuer": self.issuer_url,
                "audience": TOKEN_EXCHANGE,
                "subjects": sorted(self.subjects),
                "lifetimeSeconds": self.lifetime_seconds,
                "tokensIssued": self.tokens_issued,
            }
        )

    async def configure(self, request: web.Request) -> web.Response:
        """{"subjects": [...], "lifetimeSeconds": n}: the trusted subjects, and how long new tokens live."""
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="a JSON object")
        if "subjects" in body:
            self.subjects = {str(s) for s in body["subjects"]}
        if "lifetimeSeconds" in body:
            self.lifetime_seconds = int(body["lifetimeSeconds"])
        return await self.describe(request)

    def failure(self, assertion: str) -> AadError | None:
        """Why a federated assertion is refused, as (status, error, AADSTS code, text); None when it is trusted."""
        try:
            claims = jwt.decode(
                assertion,
                self.issuer.public_key,
                algorithms=["RS256"],
                audience=TOKEN_EXCHANGE,
                issuer=self.issuer_url,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            return 401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        except jwt.InvalidAudienceError:
            text = f"No matching federated identity record found for presented assertion audience. ({TOKEN_EXCHANGE})"
            return 401, "invalid_client", 700212, text
        except jwt.InvalidIssuerError:
            return (
                401,
                "invalid_client",
                700211,
                "No matching federated identity record found for presented assertion issuer.",
            )
        except jwt.PyJWTError:
            return 401, "invalid_client", 700027, "Client assertion failed signature validation."
        if claims.get("sub") not in self.subjects:
            text = "No matching federated identity record found for presented assertion subject."
            return 401, "invalid_client", 700213, text
        return None
