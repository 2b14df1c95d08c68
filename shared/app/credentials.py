"""The Graph and SharePoint credentials and clients, built from the settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.config.settings import Settings
from shared.errors import MissingSettingError
from shared.graph import graph_scope
from shared.sharepoint.client import SharePointClient

if TYPE_CHECKING:
    from msgraph.graph_service_client import GraphServiceClient

# How the multi-tenant app signs in (tenants_sign_in).
SECRET = "secret"
CERTIFICATE = "certificate"
FEDERATED = "federated"
# A federated credential's audience in the national clouds (Entra ID's token exchange app); else the public one.
TOKEN_EXCHANGE = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
}
# The managed identity's token is fetched again when it has less than this left (it lives about a day).
ASSERTION_MARGIN_SECONDS = 300


def identity_options(settings: Settings, app_credential: bool) -> dict[str, Any]:
    """azure-identity options for an app's own credential (secret or certificate) or a managed one."""
    options: dict[str, Any] = {}
    if settings.authority_host:
        options["authority"] = settings.authority_host
    if settings.authority_ca_file:
        options["connection_verify"] = settings.authority_ca_file
    if app_credential and settings.custom_authority:
        # Discovery would ask the public cloud about this authority, which fails.
        options["disable_instance_discovery"] = True
    return options


def managed_credential(settings: Settings) -> Any:
    """DefaultAzureCredential: managed identity in Azure, a developer's login locally."""
    from azure.identity.aio import DefaultAzureCredential

    options = identity_options(settings, app_credential=False)
    if settings.azure_client_id:
        # A user-assigned managed identity (AZURE_CLIENT_ID), read from Settings, not os.environ.
        options["managed_identity_client_id"] = settings.azure_client_id
    return DefaultAzureCredential(**options)


def build_client(settings: Settings) -> tuple[GraphServiceClient, Any]:
    """A GraphServiceClient pointed at GRAPH_BASE_URL, and its azure-identity credential."""
    from msgraph.graph_service_client import GraphServiceClient

    credential: Any
    if settings.client_secret:
        from azure.identity.aio import ClientSecretCredential

        options = identity_options(settings, app_credential=True)
        credential = ClientSecretCredential(settings.tenant_id, settings.client_id, settings.client_secret, **options)
    else:
        credential = managed_credential(settings)
    client = GraphServiceClient(credentials=credential, scopes=[graph_scope(settings.graph_base_url)])
    client.request_adapter.base_url = settings.graph_base_url
    return client, credential


def tenants_sign_in(settings: Settings) -> str:
    """How the multi-tenant app signs in (TENANT_MODE=multi): its secret, its certificate, or federated.

    ``federated``: the app registration trusts the user-assigned managed identity AZURE_CLIENT_ID
    through a federated identity credential. A managed identity cannot itself be consented to by
    other tenants, so multi mode never signs in with it directly.
    """
    if settings.client_secret:
        return SECRET
    if settings.client_certificate:
        return CERTIFICATE
    if settings.azure_client_id:
        return FEDERATED
    raise MissingSettingError(
        "GRAPH_CLIENT_SECRET, GRAPH_CLIENT_CERTIFICATE or AZURE_CLIENT_ID (TENANT_MODE=multi signs in with the"
        " app registration's secret, its certificate, or a user-assigned managed identity it trusts)"
    )


def token_exchange_scope(settings: Settings) -> str:
    """The scope of the managed identity's token that a federated credential accepts, by cloud."""
    host = urlsplit(settings.authority_host or "").hostname or ""
    return f"{TOKEN_EXCHANGE.get(host, 'api://AzureADTokenExchange')}/.default"


class TenantsCredentials:
    """Makes the multi-tenant app's credential, one asked for each tenant's token with ``tenant_id``.

    azure-identity requests it from ``{authority}/{tenant}`` and caches tokens per tenant;
    ``additionally_allowed_tenants`` lets it serve any tenant that consented. Each call makes a
    credential with an empty cache (TenantGraphs' fresh check); what they share (the certificate,
    the managed identity) is made once and closed with ``close``.
    """

    def __init__(self, make: Callable[[], Any], assertion: ManagedIdentityAssertion | None = None) -> None:
        self._make = make
        self._assertion = assertion

    def __call__(self) -> Any:
        return self._make()

    async def close(self) -> None:
        """Close the managed identity's credential, if there is one."""
        if self._assertion is not None:
            await self._assertion.close()


async def tenants_credentials(settings: Settings) -> TenantsCredentials:
    """The maker of the multi-tenant app's credentials, from the settings (see ``tenants_sign_in``).

    A certificate is loaded and checked once, here, so a bad one is named at start-up.
    """
    from azure.identity.aio import CertificateCredential, ClientAssertionCredential, ClientSecretCredential

    method = tenants_sign_in(settings)
    options = identity_options(settings, app_credential=True) | {"additionally_allowed_tenants": ["*"]}
    client_id = settings.client_id
    if method == SECRET:
        secret = settings.client_secret or ""
        return TenantsCredentials(lambda: ClientSecretCredential("organizations", client_id, secret, **options))
    if method == CERTIFICATE:
        from shared.security.certificates import load_certificate

        assert settings.client_certificate is not None
        loaded = await load_certificate(
            settings.client_certificate, settings.client_certificate_password, "graph", "GRAPH_CLIENT_CERTIFICATE"
        )
        pem = _pem(loaded.der, loaded.private_key)
        return TenantsCredentials(
            lambda: CertificateCredential("organizations", client_id, certificate_data=pem, **options)
        )
    assertion = ManagedIdentityAssertion(managed_identity(settings), token_exchange_scope(settings))
    return TenantsCredentials(
        lambda: FederatedCredential(
            ClientAssertionCredential("organizations", client_id, assertion, **options), assertion
        ),
        assertion,
    )


def managed_identity(settings: Settings) -> Any:
    """The user-assigned managed identity (AZURE_CLIENT_ID) whose token a federated credential trusts."""
    from azure.identity.aio import ManagedIdentityCredential

    # The host's identity endpoint (IDENTITY_ENDPOINT in App Service and Functions), not the authority.
    return ManagedIdentityCredential(client_id=settings.azure_client_id)


class ManagedIdentityAssertion:
    """The managed identity's token for the token exchange audience: the client assertion of a federated credential.

    azure-identity calls an assertion function synchronously (aio ClientAssertionCredential, pinned
    1.27.0), so the token is fetched asynchronously before (``ensure``) and handed over by ``__call__``.
    """

    def __init__(self, credential: Any, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        self._token = ""
        self._expires_on = 0
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Have a token that lives a while yet: the managed identity's cached one, or a new one."""
        if self._expires_on - time.time() > ASSERTION_MARGIN_SECONDS:
            return
        async with self._lock:
            if self._expires_on - time.time() > ASSERTION_MARGIN_SECONDS:
                return  # another request fetched it while this one waited
            token = await self._credential.get_token(self._scope)
            self._token, self._expires_on = token.token, token.expires_on

    def __call__(self) -> str:
        return self._token

    async def close(self) -> None:
        """Close the managed identity's credential."""
        await self._credential.close()


class FederatedCredential:
    """A ClientAssertionCredential whose assertion, the managed identity's token, is made ready before each request."""

    def __init__(self, inner: Any, assertion: ManagedIdentityAssertion) -> None:
        self._inner = inner
        self._assertion = assertion

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """As azure-identity's get_token (``tenant_id`` names the tenant)."""
        await self._assertion.ensure()
        return await self._inner.get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        """As azure-identity's get_token_info."""
        await self._assertion.ensure()
        return await self._inner.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        """Close this credential (the managed identity's is the maker's, closed with it)."""
        await self._inner.close()

    async def __aenter__(self) -> FederatedCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


async def build_sharepoint_client(settings: Settings) -> SharePointClient:
    """The adapter with a certificate credential (SHAREPOINT_CERTIFICATE), else managed identity.

    The certificate (a PFX or PEM file, or a Key Vault secret URI) is loaded and
    checked by shared/security/certificates.py, so a bad one is named at start-up.
    """
    import httpx

    credential: Any
    if settings.sharepoint_certificate:
        from azure.identity.aio import CertificateCredential

        from shared.security.certificates import load_certificate

        options = identity_options(settings, app_credential=True)
        loaded = await load_certificate(
            settings.sharepoint_certificate,
            settings.sharepoint_certificate_password,
            "sharepoint",
            "SHAREPOINT_CERTIFICATE",
        )
        credential = CertificateCredential(
            settings.tenant_id, settings.client_id, certificate_data=_pem(loaded.der, loaded.private_key), **options
        )
    else:
        credential = managed_credential(settings)
    return SharePointClient(credential, httpx.AsyncClient(timeout=30.0))


def _pem(der: bytes, private_key: Any) -> bytes:
    """The key and certificate as one PEM, which CertificateCredential reads (kept in memory only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_der_x509_certificate

    key = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return bytes(key + load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
