"""The settings of rich notifications: notification certificates, and what checking validation tokens needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config.environment import optional
from shared.config.environment import required as required_setting
from shared.config.tenants import tenant_mode
from shared.errors import InvalidSettingError, MissingSettingError
from shared.model.issuers import DEFAULT_ISSUERS
from shared.model.tenant import MULTI


@dataclass(frozen=True)
class CertificateSource:
    """Where one notification certificate lives (a PFX or PEM path, or a Key Vault secret URI)."""

    location: str
    password: str | None
    certificate_id: str
    setting: str  # the setting that named it, for errors


@dataclass(frozen=True)
class ResourceDataSettings:
    """NOTIFICATION_CERTIFICATE* settings: the certificate Graph encrypts for, and the previous one."""

    current: CertificateSource
    previous: CertificateSource | None = None


@dataclass(frozen=True)
class TokenSettings:
    """What checking validation tokens needs; read on the HTTP path without the other settings."""

    client_id: str
    authority: str
    ca_file: str | None
    issuers: tuple[str, ...]
    # GRAPH_TENANT_ID: the one tenant whose tokens and notifications are accepted (None: none is).
    tenant_id: str | None = None
    # TENANT_MODE=multi: each batch's tokens must be its subscriptions' tenants' (tenant_id is then None).
    multi: bool = False


def resource_data_settings(environ: Mapping[str, str], required: bool) -> ResourceDataSettings | None:
    """The notification certificates; a gap is named when an entry asks for resource data."""
    location = optional(environ, "NOTIFICATION_CERTIFICATE")
    if location is None:
        if required:
            raise MissingSettingError("NOTIFICATION_CERTIFICATE")
        return None
    certificate_id = required_setting(environ, "NOTIFICATION_CERTIFICATE_ID")
    if len(certificate_id) > 128:
        raise InvalidSettingError("NOTIFICATION_CERTIFICATE_ID", "at most 128 characters")
    current = CertificateSource(
        location, environ.get("NOTIFICATION_CERTIFICATE_PASSWORD") or None, certificate_id, "NOTIFICATION_CERTIFICATE"
    )
    previous_location = optional(environ, "NOTIFICATION_CERTIFICATE_PREVIOUS")
    previous = None
    if previous_location is not None:
        previous = CertificateSource(
            previous_location,
            environ.get("NOTIFICATION_CERTIFICATE_PREVIOUS_PASSWORD") or None,
            optional(environ, "NOTIFICATION_CERTIFICATE_PREVIOUS_ID") or certificate_id,
            "NOTIFICATION_CERTIFICATE_PREVIOUS",
        )
    return ResourceDataSettings(current, previous)


def token_settings(environ: Mapping[str, str]) -> TokenSettings | None:
    """GRAPH_CLIENT_ID, GRAPH_TENANT_ID, AZURE_AUTHORITY_HOST and VALIDATION_TOKEN_ISSUERS; None without a client id."""
    client_id = optional(environ, "GRAPH_CLIENT_ID")
    if client_id is None:
        return None
    authority = optional(environ, "AZURE_AUTHORITY_HOST") or "https://login.microsoftonline.com"
    if not authority.startswith("https://"):
        raise InvalidSettingError("AZURE_AUTHORITY_HOST", "must be an https URL")
    multi = tenant_mode(environ) == MULTI
    text = optional(environ, "VALIDATION_TOKEN_ISSUERS")
    issuers = DEFAULT_ISSUERS
    if text is not None:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raw = None
        usable = isinstance(raw, list) and raw and all(isinstance(i, str) and i.startswith("https://") for i in raw)
        if not usable or not isinstance(raw, list):
            raise InvalidSettingError("VALIDATION_TOKEN_ISSUERS", "must be a JSON list of https issuer URLs")
        issuers = tuple(raw)
    return TokenSettings(
        client_id,
        authority.rstrip("/"),
        optional(environ, "AZURE_AUTHORITY_CA_FILE"),
        issuers,
        None if multi else optional(environ, "GRAPH_TENANT_ID"),
        multi,
    )
