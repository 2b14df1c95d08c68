"""TENANT_MODE and the settings of a multi-tenant deployment: onboarding, suspension, removal."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from shared.config.environment import check_url, optional
from shared.errors import InvalidSettingError
from shared.model.tenant import SINGLE, TENANT_MODES

DEFAULT_SUSPENDED_REMOVE_AFTER_DAYS = 30
# The app's own consent route, beside its notification route.
CONSENT_ROUTE = "/api/consent"


def tenant_mode(environ: Mapping[str, str]) -> str:
    """TENANT_MODE: ``single`` (the default: GRAPH_TENANT_ID alone) or ``multi`` (the tenants table)."""
    mode = (optional(environ, "TENANT_MODE") or SINGLE).lower()
    if mode not in TENANT_MODES:
        raise InvalidSettingError("TENANT_MODE", f"must be one of {', '.join(TENANT_MODES)}")
    return mode


def suspended_remove_after(environ: Mapping[str, str]) -> timedelta | None:
    """TENANT_SUSPENDED_REMOVE_AFTER: whole days a tenant may stay suspended before it is removed (0: never)."""
    text = optional(environ, "TENANT_SUSPENDED_REMOVE_AFTER")
    if text is None:
        return timedelta(days=DEFAULT_SUSPENDED_REMOVE_AFTER_DAYS)
    try:
        days = int(text)
    except ValueError:
        raise InvalidSettingError("TENANT_SUSPENDED_REMOVE_AFTER", "must be a whole number of days") from None
    if days < 0:
        raise InvalidSettingError("TENANT_SUSPENDED_REMOVE_AFTER", "must be 0 (never) or more days")
    return timedelta(days=days) if days else None


def consent_redirect_url(environ: Mapping[str, str], notification_url: str) -> str:
    """CONSENT_REDIRECT_URL: where the identity platform sends an admin back; default the app's /api/consent."""
    url = optional(environ, "CONSENT_REDIRECT_URL")
    if url is not None:
        check_url("CONSENT_REDIRECT_URL", url)
        return url
    parts = urlsplit(notification_url)
    return urlunsplit((parts.scheme, parts.netloc, CONSENT_ROUTE, "", ""))
