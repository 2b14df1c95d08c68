"""The app's settings: one frozen object, read once from an injectable mapping."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from shared.errors import InvalidSettingError, MissingSettingError
from shared.model.catalog import READABLE, query_problem, readable_kind, split_resource
from shared.model.connection import StorageConnection
from shared.model.names import CHANGES_QUEUE, NOTIFICATIONS_QUEUE
from shared.model.resources import MEMBER_PLACEHOLDER, DesiredSubscription
from shared.model.sharepoint import SharePointList
from shared.model.sharepoint import notification_url_for as sharepoint_url_for
from shared.model.sharepoint import parse_subscriptions as parse_sharepoint

DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Every 5 minutes: the safety sweep runs on this timer, so it bounds how late a dropped change arrives.
DEFAULT_RENEW_SCHEDULE = "0 */5 * * * *"
DEFAULT_SWEEP_AFTER_SECONDS = 900
# The calendar window Outlook events are read over (CALENDAR_WINDOW_DAYS_PAST / _AHEAD).
DEFAULT_CALENDAR_WINDOW_DAYS_PAST = 30
DEFAULT_CALENDAR_WINDOW_DAYS_AHEAD = 365
# One health snapshot serves every probe for this long: a load balancer cannot hammer storage or Graph.
DEFAULT_HEALTH_CACHE_SECONDS = 30.0
PUBLIC_AUTHORITIES = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})


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
    health_cache_seconds: float = DEFAULT_HEALTH_CACHE_SECONDS
    # The certificates for rich notifications; None when no entry asks for resource data and none is set.
    resource_data: ResourceDataSettings | None = None
    # Outlook events are read through calendarView delta over this window around now.
    calendar_window_days_past: int = DEFAULT_CALENDAR_WINDOW_DAYS_PAST
    calendar_window_days_ahead: int = DEFAULT_CALENDAR_WINDOW_DAYS_AHEAD

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
        base_url = _optional(environ, "GRAPH_BASE_URL") or DEFAULT_GRAPH_BASE_URL
        _check_url("GRAPH_BASE_URL", base_url)
        notification_url = _required(environ, "NOTIFICATION_URL")
        _check_url("NOTIFICATION_URL", notification_url)
        lifecycle_url = _required(environ, "LIFECYCLE_NOTIFICATION_URL")
        _check_url("LIFECYCLE_NOTIFICATION_URL", lifecycle_url)
        authority = _optional(environ, "AZURE_AUTHORITY_HOST")
        if authority and not authority.startswith("https://"):
            raise InvalidSettingError("AZURE_AUTHORITY_HOST", "must be an https URL")
        initial_sync = (_optional(environ, "INITIAL_SYNC") or "latest").lower()
        if initial_sync not in ("latest", "full"):
            raise InvalidSettingError("INITIAL_SYNC", "must be 'latest' or 'full'")
        connection = storage_connection(environ)
        tenant_id = _required(environ, "GRAPH_TENANT_ID")
        secret = _optional(environ, "GRAPH_CLIENT_SECRET")
        subscriptions = parse_desired(_optional(environ, "GRAPH_SUBSCRIPTIONS") or "[]")
        # With managed identity the app registration is needed only as the validation tokens' audience.
        needs_client_id = secret is not None or any(s.include_resource_data for s in subscriptions)
        client_id = _required(environ, "GRAPH_CLIENT_ID") if needs_client_id else _optional(environ, "GRAPH_CLIENT_ID")
        return cls(
            storage_connection=connection,
            tenant_id=tenant_id,
            client_id=client_id or "",
            client_secret=secret,
            graph_base_url=base_url.rstrip("/"),
            authority_host=authority,
            authority_ca_file=_optional(environ, "AZURE_AUTHORITY_CA_FILE"),
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            subscriptions=subscriptions,
            renew_schedule=renew_schedule(environ),
            initial_sync=initial_sync,
            sweep_after_seconds=sweep_after_seconds(environ),
            changes_connection=changes_connection(environ),
            azure_client_id=_optional(environ, "AZURE_CLIENT_ID"),
            health_cache_seconds=health_cache_seconds(environ),
            resource_data=resource_data_settings(environ, any(s.include_resource_data for s in subscriptions)),
            calendar_window_days_past=window_days(environ, "CALENDAR_WINDOW_DAYS_PAST"),
            calendar_window_days_ahead=window_days(environ, "CALENDAR_WINDOW_DAYS_AHEAD"),
            sharepoint_subscriptions=parse_sharepoint(_optional(environ, "SHAREPOINT_SUBSCRIPTIONS") or "[]"),
            sharepoint_notification_url=sharepoint_notification_url(environ, notification_url),
            sharepoint_certificate=_optional(environ, "SHAREPOINT_CERTIFICATE"),
            sharepoint_certificate_password=_optional(environ, "SHAREPOINT_CERTIFICATE_PASSWORD"),
        )


def sharepoint_notification_url(environ: Mapping[str, str], notification_url: str) -> str:
    """SHAREPOINT_NOTIFICATION_URL; by default NOTIFICATION_URL with its last path segment ``sharepoint``."""
    url = _optional(environ, "SHAREPOINT_NOTIFICATION_URL") or sharepoint_url_for(notification_url)
    _check_url("SHAREPOINT_NOTIFICATION_URL", url)
    return url


STORAGE_SETTING = "AzureWebJobsStorage"
CHANGES_SETTING = "CHANGES_STORAGE"
HTTP_AUTH_LEVELS = ("anonymous", "function", "admin")


def storage_connection(
    environ: Mapping[str, str], setting: str = STORAGE_SETTING, services: tuple[str, ...] = ("queue", "table")
) -> StorageConnection:
    """Read only the storage connection: the HTTP path needs nothing else.

    A connection string wins, as with the Functions host; otherwise the identity-based
    settings must give an endpoint for each of ``services``. A gap names the setting.
    """
    text = _optional(environ, setting)
    if text is not None:
        return StorageConnection(connection_string=text)
    prefix = f"{setting}__"
    account = _optional(environ, f"{prefix}accountName")
    if account is not None and not re.fullmatch(r"[a-z0-9]{3,24}", account):
        raise InvalidSettingError(f"{prefix}accountName", "must be 3 to 24 lower-case letters and digits")
    uris: dict[str, str | None] = {}
    for service in ("queue", "table", "blob"):
        key = f"{prefix}{service}ServiceUri"
        uri = _optional(environ, key)
        if uri is not None:
            _check_url(key, uri)
        elif account is not None:
            uri = f"https://{account}.{service}.core.windows.net"
        uris[service] = uri.rstrip("/") if uri else None
    if all(uri is None for uri in uris.values()):
        raise MissingSettingError(setting)
    for service in services:
        if uris[service] is None:
            raise MissingSettingError(f"{prefix}{service}ServiceUri")
    credential = _optional(environ, f"{prefix}credential")
    if credential is not None and credential.lower() != "managedidentity":
        raise InvalidSettingError(f"{prefix}credential", "the only value is 'managedidentity'")
    return StorageConnection(
        queue_service_uri=uris["queue"],
        table_service_uri=uris["table"],
        blob_service_uri=uris["blob"],
        credential=credential.lower() if credential else None,
        client_id=_optional(environ, f"{prefix}clientId"),
    )


def changes_connection(environ: Mapping[str, str]) -> StorageConnection | None:
    """Where graph-changes lives: ``CHANGES_STORAGE`` (same forms as AzureWebJobsStorage), else None.

    None keeps it in the app's own account. Another account lets consumers read events
    without any right on the account that holds the app's secrets and cursors.
    """
    named = (key for key, value in environ.items() if value.strip())
    if not any(key == CHANGES_SETTING or key.startswith(f"{CHANGES_SETTING}__") for key in named):
        return None
    return storage_connection(environ, CHANGES_SETTING, services=("queue",))


def http_auth_level(environ: Mapping[str, str]) -> str:
    """HTTP_AUTH_LEVEL: the HTTP routes' auth level (anonymous, function or admin), read at import."""
    level = (_optional(environ, "HTTP_AUTH_LEVEL") or "anonymous").lower()
    if level not in HTTP_AUTH_LEVELS:
        raise InvalidSettingError("HTTP_AUTH_LEVEL", f"must be one of {', '.join(HTTP_AUTH_LEVELS)}")
    return level


def health_cache_seconds(environ: Mapping[str, str]) -> float:
    """HEALTH_CACHE_SECONDS: how long one health snapshot serves every probe."""
    return _seconds(environ, "HEALTH_CACHE_SECONDS", DEFAULT_HEALTH_CACHE_SECONDS, 0, 3600)


DEFAULT_REFUSALS_FLUSH_SECONDS = 30.0


def refusals_flush_seconds(environ: Mapping[str, str]) -> float:
    """REFUSALS_FLUSH_SECONDS: how often an instance writes its refusal counts to the refusals table."""
    return _seconds(environ, "REFUSALS_FLUSH_SECONDS", DEFAULT_REFUSALS_FLUSH_SECONDS, 1, 3600)


def _seconds(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number of seconds between ``low`` and ``high``; ``default`` when unset."""
    text = _optional(environ, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidSettingError(name, "must be a number of seconds") from None
    if not low <= value <= high:
        raise InvalidSettingError(name, f"must be between {low:g} and {high:g}")
    return value


DEFAULT_TOKEN_ISSUERS = ("https://sts.windows.net/{tenant}/", "https://login.microsoftonline.com/{tenant}/v2.0")


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


def resource_data_settings(environ: Mapping[str, str], required: bool) -> ResourceDataSettings | None:
    """The notification certificates; a gap is named when an entry asks for resource data."""
    location = _optional(environ, "NOTIFICATION_CERTIFICATE")
    if location is None:
        if required:
            raise MissingSettingError("NOTIFICATION_CERTIFICATE")
        return None
    certificate_id = _required(environ, "NOTIFICATION_CERTIFICATE_ID")
    if len(certificate_id) > 128:
        raise InvalidSettingError("NOTIFICATION_CERTIFICATE_ID", "at most 128 characters")
    current = CertificateSource(
        location, environ.get("NOTIFICATION_CERTIFICATE_PASSWORD") or None, certificate_id, "NOTIFICATION_CERTIFICATE"
    )
    previous_location = _optional(environ, "NOTIFICATION_CERTIFICATE_PREVIOUS")
    previous = None
    if previous_location is not None:
        previous = CertificateSource(
            previous_location,
            environ.get("NOTIFICATION_CERTIFICATE_PREVIOUS_PASSWORD") or None,
            _optional(environ, "NOTIFICATION_CERTIFICATE_PREVIOUS_ID") or certificate_id,
            "NOTIFICATION_CERTIFICATE_PREVIOUS",
        )
    return ResourceDataSettings(current, previous)


def token_settings(environ: Mapping[str, str]) -> TokenSettings | None:
    """GRAPH_CLIENT_ID, GRAPH_TENANT_ID, AZURE_AUTHORITY_HOST and VALIDATION_TOKEN_ISSUERS; None without a client id."""
    client_id = _optional(environ, "GRAPH_CLIENT_ID")
    if client_id is None:
        return None
    authority = _optional(environ, "AZURE_AUTHORITY_HOST") or "https://login.microsoftonline.com"
    if not authority.startswith("https://"):
        raise InvalidSettingError("AZURE_AUTHORITY_HOST", "must be an https URL")
    text = _optional(environ, "VALIDATION_TOKEN_ISSUERS")
    issuers = DEFAULT_TOKEN_ISSUERS
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
        _optional(environ, "AZURE_AUTHORITY_CA_FILE"),
        issuers,
        _optional(environ, "GRAPH_TENANT_ID"),
    )


def renew_schedule(environ: Mapping[str, str]) -> str:
    """The renew timer's six-field NCRONTAB schedule (seconds first)."""
    schedule = _optional(environ, "RENEW_SCHEDULE") or DEFAULT_RENEW_SCHEDULE
    if len(schedule.split()) != 6:
        raise InvalidSettingError("RENEW_SCHEDULE", "needs six NCRONTAB fields, seconds first")
    return schedule


def window_days(environ: Mapping[str, str], key: str) -> int:
    """CALENDAR_WINDOW_DAYS_PAST or _AHEAD: whole days, 0 or more (defaults 30 and 365)."""
    defaults = {"CALENDAR_WINDOW_DAYS_PAST": DEFAULT_CALENDAR_WINDOW_DAYS_PAST}
    text = _optional(environ, key)
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
    text = _optional(environ, "SWEEP_AFTER_SECONDS")
    if text is None:
        return DEFAULT_SWEEP_AFTER_SECONDS
    try:
        value = int(text)
    except ValueError:
        raise InvalidSettingError("SWEEP_AFTER_SECONDS", "must be a whole number of seconds") from None
    if value < 0:
        raise InvalidSettingError("SWEEP_AFTER_SECONDS", "must be 0 or more")
    return value


def parse_desired(text: str) -> tuple[DesiredSubscription, ...]:
    """Parse GRAPH_SUBSCRIPTIONS: a JSON list of {"resource": ..., "changeType": ...}."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"not JSON ({exc.msg})") from exc
    if not isinstance(raw, list):
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", "must be a JSON list")
    desired: dict[str, DesiredSubscription] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} is not an object")
        resource = entry.get("resource")
        change_type = entry.get("changeType", "updated")
        if not isinstance(resource, str) or not resource.strip("/ "):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} has no resource")
        if not isinstance(change_type, str) or not change_type:
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} has no changeType")
        include = entry.get("includeResourceData", False)
        if not isinstance(include, bool):
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS", f"entry {index}: includeResourceData must be true or false"
            )
        group = entry.get("forEachMemberOf")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: forEachMemberOf must be a group id")
        path, query = split_resource(resource)
        if (group is not None) != (MEMBER_PLACEHOLDER in path):
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS",
                f"entry {index} ({resource!r}): forEachMemberOf and a {MEMBER_PLACEHOLDER} placeholder go together",
            )
        item = DesiredSubscription(path, change_type.replace(" ", ""), include, group, query)
        _check_readable(index, item)
        desired[item.key] = item
    return tuple(desired.values())


def _check_readable(index: int, item: DesiredSubscription) -> None:
    """Reject, naming the entry, a resource no change source reads or a changeType Graph refuses on it."""
    # A set's members are checked as one of them: the placeholder stands for a user id.
    kind = readable_kind(item.resource.replace(MEMBER_PLACEHOLDER, "member"))
    if kind is None:
        kinds = ", ".join(k.name for k in READABLE)
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): no change source reads it (readable: {kinds})"
        )
    if not kind.change_types:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): a {kind.name} is not a Graph resource"
        )
    refused = [t for t in item.change_type.split(",") if t not in kind.change_types]
    if refused:
        allowed = ", ".join(sorted(kind.change_types))
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS",
            f"entry {index} ({item.resource!r}): changeType {','.join(refused)!r} is refused for a {kind.name}"
            f" (allowed: {allowed})",
        )
    if kind.resource_data_required and not item.include_resource_data:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS",
            f"entry {index} ({item.resource!r}): Graph requires includeResourceData for {kind.name} (app-only)",
        )
    if item.include_resource_data and not kind.resource_data:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): Graph sends no resource data for a {kind.name}"
        )
    problem = query_problem(kind, item.query, item.include_resource_data)
    if problem is not None:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.graph_resource!r}): {problem}")


def _required(environ: Mapping[str, str], key: str) -> str:
    value = environ.get(key, "").strip()
    if not value:
        raise MissingSettingError(key)
    return value


def _optional(environ: Mapping[str, str], key: str) -> str | None:
    value = environ.get(key, "").strip()
    return value or None


def _check_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSettingError(key, "must be an absolute http(s) URL")
