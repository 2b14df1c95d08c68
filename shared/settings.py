"""The app's settings: one frozen object, read once from an injectable mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from .errors import InvalidSettingError, MissingSettingError
from .sources.catalog import READABLE, readable_kind

DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Every 5 minutes: the safety sweep runs on this timer, so it bounds how late a dropped change arrives.
DEFAULT_RENEW_SCHEDULE = "0 */5 * * * *"
DEFAULT_SWEEP_AFTER_SECONDS = 900
PUBLIC_AUTHORITIES = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})
NOTIFICATIONS_QUEUE = "graph-notifications"
CHANGES_QUEUE = "graph-changes"
# Stands for each member's user id in a subscription set's resource.
MEMBER_PLACEHOLDER = "{member}"


def resource_key(resource: str) -> str:
    """A resource as a Table storage key (which forbids '/', '\\', '#' and '?')."""
    safe = resource.strip().strip("/").replace("/", ":").replace("\\", ":")
    return safe.replace("#", "%23").replace("?", "%3F")


@dataclass(frozen=True)
class DesiredSubscription:
    """One entry of GRAPH_SUBSCRIPTIONS: a resource to watch and the change types.

    ``include_resource_data`` asks Graph for rich notifications (encrypted resource
    data); ``for_each_member_of`` names a group whose members the entry expands over,
    its resource holding a ``{member}`` placeholder.
    """

    resource: str
    change_type: str
    include_resource_data: bool = False
    for_each_member_of: str | None = None

    @property
    def key(self) -> str:
        """A stable key usable as a Table storage RowKey (no '/', '\\', '#' or '?')."""
        return f"{resource_key(self.resource)}|{self.change_type}"


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, validated once."""

    storage_connection: str
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
        return cls(
            storage_connection=_required(environ, "AzureWebJobsStorage"),
            tenant_id=_required(environ, "GRAPH_TENANT_ID"),
            client_id=_required(environ, "GRAPH_CLIENT_ID"),
            client_secret=_optional(environ, "GRAPH_CLIENT_SECRET"),
            graph_base_url=base_url.rstrip("/"),
            authority_host=authority,
            authority_ca_file=_optional(environ, "AZURE_AUTHORITY_CA_FILE"),
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            subscriptions=parse_desired(_optional(environ, "GRAPH_SUBSCRIPTIONS") or "[]"),
            renew_schedule=renew_schedule(environ),
            initial_sync=initial_sync,
            sweep_after_seconds=sweep_after_seconds(environ),
        )


def storage_connection(environ: Mapping[str, str]) -> str:
    """Read only the storage connection: the HTTP path needs nothing else."""
    return _required(environ, "AzureWebJobsStorage")


def renew_schedule(environ: Mapping[str, str]) -> str:
    """The renew timer's six-field NCRONTAB schedule (seconds first)."""
    schedule = _optional(environ, "RENEW_SCHEDULE") or DEFAULT_RENEW_SCHEDULE
    if len(schedule.split()) != 6:
        raise InvalidSettingError("RENEW_SCHEDULE", "needs six NCRONTAB fields, seconds first")
    return schedule


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
        if (group is not None) != (MEMBER_PLACEHOLDER in resource):
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS",
                f"entry {index} ({resource!r}): forEachMemberOf and a {MEMBER_PLACEHOLDER} placeholder go together",
            )
        item = DesiredSubscription(resource.strip().strip("/"), change_type.replace(" ", ""), include, group)
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
    refused = [t for t in item.change_type.split(",") if t not in kind.change_types]
    if refused:
        allowed = ", ".join(sorted(kind.change_types))
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS",
            f"entry {index} ({item.resource!r}): changeType {','.join(refused)!r} is refused for a {kind.name}"
            f" (allowed: {allowed})",
        )
    if item.include_resource_data and not kind.resource_data:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): Graph sends no resource data for a {kind.name}"
        )


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
