"""The app's settings: one frozen object, read once from an injectable mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from shared.config.environment import check_url, optional, required, seconds
from shared.config.events import event_format
from shared.config.security import ResourceDataSettings, resource_data_settings
from shared.config.storage import changes_connection, storage_connection
from shared.config.subscriptions import parse_desired, parse_sharepoint, sharepoint_notification_url
from shared.config.tenants import consent_redirect_url, suspended_remove_after, tenant_mode
from shared.errors import InvalidSettingError
from shared.model.connection import StorageConnection
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.model.resources import DesiredSubscription
from shared.model.sharepoint import SharePointList
from shared.model.tenant import MULTI, SINGLE

DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Every 5 minutes: the safety sweep runs on this timer, so it bounds how late a dropped change arrives.
DEFAULT_RENEW_SCHEDULE = "0 */5 * * * *"
DEFAULT_SWEEP_AFTER_SECONDS = 900
# The calendar window Outlook events are read over (CALENDAR_WINDOW_DAYS_PAST / _AHEAD).
DEFAULT_CALENDAR_WINDOW_DAYS_PAST = 30
DEFAULT_CALENDAR_WINDOW_DAYS_AHEAD = 365
# One health snapshot serves every probe for this long: a load balancer cannot hammer storage or Graph.
DEFAULT_HEALTH_CACHE_SECONDS = 30.0
DEFAULT_REFUSALS_FLUSH_SECONDS = 30.0
PUBLIC_AUTHORITIES = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})
HTTP_AUTH_LEVELS = ("anonymous", "function", "admin")


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, validated once."""

    storage_connection: StorageConnection
    tenant_id: str
    client_id: str
    client_secret: str | None
    graph_base_url: str
    authority_host: str | None
    authority_ca_file: str | None
    notification_url: str
    lifecycle_notification_url: str
    subscriptions: tuple[DesiredSubscription, ...]
    renew_schedule: str
    initial_sync: str = "latest"
    sweep_after_seconds: int = DEFAULT_SWEEP_AFTER_SECONDS
    notifications_queue: str = NOTIFICATIONS_QUEUE
    changes_queue: str = CHANGES_QUEUE
    # graph-changes in another storage account (CHANGES_STORAGE); None: the app's own.
    changes_connection: StorageConnection | None = None
    # SharePoint's own list webhooks (shared/sharepoint): lists to watch, their URL, the app's certificate.
    sharepoint_subscriptions: tuple[SharePointList, ...] = ()
    sharepoint_notification_url: str = ""
    sharepoint_certificate: str | None = None
    sharepoint_certificate_password: str | None = None
    # A user-assigned managed identity for Graph (AZURE_CLIENT_ID); None: the system-assigned one.
    azure_client_id: str | None = None
    # multi: the app registration's certificate for Graph (GRAPH_CLIENT_CERTIFICATE, loaded like SharePoint's).
    client_certificate: str | None = None
    client_certificate_password: str | None = None
    health_cache_seconds: float = DEFAULT_HEALTH_CACHE_SECONDS
    # The certificates for rich notifications; None when no entry asks for resource data and none is set.
    resource_data: ResourceDataSettings | None = None
    # Outlook events are read through calendarView delta over this window around now.
    calendar_window_days_past: int = DEFAULT_CALENDAR_WINDOW_DAYS_PAST
    calendar_window_days_ahead: int = DEFAULT_CALENDAR_WINDOW_DAYS_AHEAD
    # TENANT_MODE: single (tenant_id, GRAPH_TENANT_ID, alone) or multi (the tenants table; tenant_id is '').
    tenant_mode: str = SINGLE
    # multi: where the identity platform sends a consenting admin back, and how long a tenant may stay suspended.
    consent_redirect_url: str = ""
    suspended_remove_after: timedelta | None = None
    # multi: GRAPH_TENANT_ID was set but is not used (the app says so at start-up).
    ignored_tenant_id: bool = False
    # EVENT_FORMAT: native (the default) or cloudevents, on graph-changes and the sink queues.
    event_format: str = "native"

    @property
    def multi_tenant(self) -> bool:
        """True in TENANT_MODE=multi."""
        return self.tenant_mode == MULTI

    @property
    def sweep_after(self) -> timedelta:
        """How old a subscription's last completed delta run may get before the sweep runs one."""
        return timedelta(seconds=self.sweep_after_seconds)

    @property
    def custom_authority(self) -> bool:
        """True when the authority is not a public cloud's, so instance discovery must be off."""
        if not self.authority_host:
            return False
        host = urlsplit(self.authority_host).hostname or self.authority_host
        return host not in PUBLIC_AUTHORITIES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate the settings; raise MissingSettingError naming the first gap."""
        base_url = optional(environ, "GRAPH_BASE_URL") or DEFAULT_GRAPH_BASE_URL
        check_url("GRAPH_BASE_URL", base_url)
        notification_url = required(environ, "NOTIFICATION_URL")
        check_url("NOTIFICATION_URL", notification_url)
        lifecycle_url = required(environ, "LIFECYCLE_NOTIFICATION_URL")
        check_url("LIFECYCLE_NOTIFICATION_URL", lifecycle_url)
        authority = optional(environ, "AZURE_AUTHORITY_HOST")
        if authority and not authority.startswith("https://"):
            raise InvalidSettingError("AZURE_AUTHORITY_HOST", "must be an https URL")
        initial_sync = (optional(environ, "INITIAL_SYNC") or "latest").lower()
        if initial_sync not in ("latest", "full"):
            raise InvalidSettingError("INITIAL_SYNC", "must be 'latest' or 'full'")
        connection = storage_connection(environ)
        mode = tenant_mode(environ)
        if mode == MULTI and optional(environ, "SHAREPOINT_SUBSCRIPTIONS") not in (None, "[]"):
            # SharePoint's own webhooks name sites of one tenant, signed in to with one certificate.
            raise InvalidSettingError(
                "SHAREPOINT_SUBSCRIPTIONS", "is single-tenant: not available with TENANT_MODE=multi"
            )
        # multi: every token comes from the tenant's own authority; GRAPH_TENANT_ID has no part.
        tenant_id = required(environ, "GRAPH_TENANT_ID") if mode == SINGLE else ""
        secret = optional(environ, "GRAPH_CLIENT_SECRET")
        certificate = client_certificate(environ, mode, secret)
        subscriptions = parse_desired(
            optional(environ, "GRAPH_SUBSCRIPTIONS") or "[]", multi=mode == MULTI, environ=environ
        )
        # With managed identity the app registration is needed only as the validation tokens' audience;
        # a multi-tenant app always names its registration, which every tenant consents to.
        needs_client_id = secret is not None or any(s.include_resource_data for s in subscriptions) or mode == MULTI
        client_id = required(environ, "GRAPH_CLIENT_ID") if needs_client_id else optional(environ, "GRAPH_CLIENT_ID")
        return cls(
            storage_connection=connection,
            tenant_id=tenant_id,
            client_id=client_id or "",
            client_secret=secret,
            graph_base_url=base_url.rstrip("/"),
            authority_host=authority,
            authority_ca_file=optional(environ, "AZURE_AUTHORITY_CA_FILE"),
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            subscriptions=subscriptions,
            renew_schedule=renew_schedule(environ),
            initial_sync=initial_sync,
            sweep_after_seconds=sweep_after_seconds(environ),
            changes_connection=changes_connection(environ),
            azure_client_id=optional(environ, "AZURE_CLIENT_ID"),
            client_certificate=certificate,
            client_certificate_password=optional(environ, "GRAPH_CLIENT_CERTIFICATE_PASSWORD"),
            health_cache_seconds=health_cache_seconds(environ),
            resource_data=resource_data_settings(environ, any(s.include_resource_data for s in subscriptions)),
            calendar_window_days_past=window_days(environ, "CALENDAR_WINDOW_DAYS_PAST"),
            calendar_window_days_ahead=window_days(environ, "CALENDAR_WINDOW_DAYS_AHEAD"),
            sharepoint_subscriptions=parse_sharepoint(optional(environ, "SHAREPOINT_SUBSCRIPTIONS") or "[]"),
            sharepoint_notification_url=sharepoint_notification_url(environ, notification_url),
            sharepoint_certificate=optional(environ, "SHAREPOINT_CERTIFICATE"),
            sharepoint_certificate_password=optional(environ, "SHAREPOINT_CERTIFICATE_PASSWORD"),
            tenant_mode=mode,
            consent_redirect_url=consent_redirect_url(environ, notification_url),
            suspended_remove_after=suspended_remove_after(environ),
            ignored_tenant_id=mode == MULTI and optional(environ, "GRAPH_TENANT_ID") is not None,
            event_format=event_format(environ),
        )


def client_certificate(environ: Mapping[str, str], mode: str, secret: str | None) -> str | None:
    """GRAPH_CLIENT_CERTIFICATE: the app's certificate for Graph, with TENANT_MODE=multi and no secret."""
    certificate = optional(environ, "GRAPH_CLIENT_CERTIFICATE")
    if certificate is None:
        return None
    if mode != MULTI:
        # Single mode signs in with GRAPH_CLIENT_SECRET or the managed identity, as before.
        raise InvalidSettingError("GRAPH_CLIENT_CERTIFICATE", "is for TENANT_MODE=multi")
    if secret is not None:
        raise InvalidSettingError("GRAPH_CLIENT_CERTIFICATE", "set it or GRAPH_CLIENT_SECRET, not both")
    return certificate


def http_auth_level(environ: Mapping[str, str]) -> str:
    """HTTP_AUTH_LEVEL: the HTTP routes' auth level (anonymous, function or admin), read at import."""
    level = (optional(environ, "HTTP_AUTH_LEVEL") or "anonymous").lower()
    if level not in HTTP_AUTH_LEVELS:
        raise InvalidSettingError("HTTP_AUTH_LEVEL", f"must be one of {', '.join(HTTP_AUTH_LEVELS)}")
    return level


def health_cache_seconds(environ: Mapping[str, str]) -> float:
    """HEALTH_CACHE_SECONDS: how long one health snapshot serves every probe."""
    return seconds(environ, "HEALTH_CACHE_SECONDS", DEFAULT_HEALTH_CACHE_SECONDS, 0, 3600)


def refusals_flush_seconds(environ: Mapping[str, str]) -> float:
    """REFUSALS_FLUSH_SECONDS: how often an instance writes its refusal counts to the refusals table."""
    return seconds(environ, "REFUSALS_FLUSH_SECONDS", DEFAULT_REFUSALS_FLUSH_SECONDS, 1, 3600)


def renew_schedule(environ: Mapping[str, str]) -> str:
    """The renew timer's six-field NCRONTAB schedule (seconds first)."""
    schedule = optional(environ, "RENEW_SCHEDULE") or DEFAULT_RENEW_SCHEDULE
    if len(schedule.split()) != 6:
        raise InvalidSettingError("RENEW_SCHEDULE", "needs six NCRONTAB fields, seconds first")
    return schedule


def window_days(environ: Mapping[str, str], key: str) -> int:
    """CALENDAR_WINDOW_DAYS_PAST or _AHEAD: whole days, 0 or more (defaults 30 and 365)."""
    defaults = {"CALENDAR_WINDOW_DAYS_PAST": DEFAULT_CALENDAR_WINDOW_DAYS_PAST}
    text = optional(environ, key)
    if text is None:
        return defaults.get(key, DEFAULT_CALENDAR_WINDOW_DAYS_AHEAD)
    try:
        value = int(text)
    except ValueError:
        raise InvalidSettingError(key, "must be a whole number of days") from None
    if value < 0:
        raise InvalidSettingError(key, "must be 0 or more")
    return value


def sweep_after_seconds(environ: Mapping[str, str]) -> int:
    """SWEEP_AFTER_SECONDS: sweep a subscription whose last completed delta run is older (0: every tick)."""
    text = optional(environ, "SWEEP_AFTER_SECONDS")
    if text is None:
        return DEFAULT_SWEEP_AFTER_SECONDS
    try:
        value = int(text)
    except ValueError:
        raise InvalidSettingError("SWEEP_AFTER_SECONDS", "must be a whole number of seconds") from None
    if value < 0:
        raise InvalidSettingError("SWEEP_AFTER_SECONDS", "must be 0 or more")
    return value
