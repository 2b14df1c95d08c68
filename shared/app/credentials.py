"""The Graph and SharePoint credentials and clients, built from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.config.settings import Settings
from shared.graph import graph_scope
from shared.sharepoint.client import SharePointClient

if TYPE_CHECKING:
    from msgraph.graph_service_client import GraphServiceClient


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


def tenants_credential(settings: Settings) -> Any:
    """The multi-tenant app's credential: one, asked for each tenant's token with ``tenant_id`` (TENANT_MODE=multi).

    azure-identity requests it from ``{authority}/{tenant}`` and caches tokens per tenant;
    ``additionally_allowed_tenants`` lets it serve any tenant that consented.
    """
    from azure.identity.aio import ClientSecretCredential

    if not settings.client_secret:
        from shared.errors import MissingSettingError

        # A managed identity belongs to one tenant: a multi-tenant app signs in with its own secret.
        raise MissingSettingError("GRAPH_CLIENT_SECRET")
    options = identity_options(settings, app_credential=True)
    return ClientSecretCredential(
        "organizations", settings.client_id, settings.client_secret, additionally_allowed_tenants=["*"], **options
    )


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
