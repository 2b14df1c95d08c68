"""Subscription model and Graph's rules for creating and renewing them.

Deviation from Graph: ``notificationUrl``/``lifecycleNotificationUrl`` must be https,
except that plain http is accepted for loopback hosts (localhost, 127.0.0.0/8, ::1),
because the local Functions host and test receivers have no TLS. Either may also name an
Event Grid partner topic (``EventGrid:?...``, eventgrid.py).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ..clock import graph_time, parse_time
from ..errors import GraphError
from ..eventgrid import is_eventgrid, parse_url
from ..rich import check_encryption

DRIVE_MAX_MINUTES = 42300
MIN_MINUTES = 45
CLIENT_STATE_MAX = 128

_RESOURCE = re.compile(
    r"^/?(?:(?P<drives>drives)/(?P<drive_id>[^/]+)/root"
    r"|(?P<kind>users|sites)/(?P<owner>[^/]+)/drive/root"
    r"|(?P<me>me)/drive/root)/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ResourceRule:
    """A resource other than a drive root that the simulator subscribes to (lists, users, groups, ...).

    ``exists(state, resource)`` answers whether the resource is there (404 otherwise).
    """

    pattern: re.Pattern[str]
    change_types: frozenset[str]
    max_minutes: int
    label: str
    exists: Callable[[Any, str], bool]
    # Rich notifications: whether includeResourceData is allowed, and whether Graph insists on it.
    resource_data: bool = False
    resource_data_required: bool = False
    # A shorter longest lifetime with resource data (Outlook: 1,440 minutes), 0 when the same.
    rich_max_minutes: int = 0
    # Teams resources: an expiry further than this needs a lifecycleNotificationUrl (Graph answers 400).
    lifecycle_required_after: timedelta | None = None


# Each module that simulates such a resource adds its rule here when imported.
RESOURCE_RULES: list[ResourceRule] = []
# A change listener gets the subscription resource and (changeType, extra notification fields) pairs.
Listener = Callable[[str, list[tuple[str, dict[str, Any]]]], None]
# The extra field under which a change hands the item as Graph renders it, for rich notifications
# (state.py encrypts it for a subscription with includeResourceData); never sent as is.
RESOURCE_KEY = "@sim.resource"
RULE_KIND = "rule"


def resource_path(resource: str) -> str:
    """A subscription resource without its OData query (``chats/getAllMessages?model=B``), as rules match it."""
    return resource.partition("?")[0].strip()


def rule_for(resource: str) -> ResourceRule | None:
    """The rule of a non-drive resource, or None (a drive root, or nothing simulated)."""
    return next((rule for rule in RESOURCE_RULES if rule.pattern.match(resource_path(resource))), None)


def max_minutes(resource: str, include_resource_data: bool = False) -> int:
    """The longest lifetime Graph grants a subscription on ``resource``."""
    rule = rule_for(resource)
    if rule is None:
        return DRIVE_MAX_MINUTES
    return (rule.rich_max_minutes if include_resource_data else 0) or rule.max_minutes


@dataclass
class Subscription:
    """One change-notification subscription."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    application_id: str
    creator_id: str
    tls_version: str
    drive_id: str
    # Rich notifications (includeResourceData): the public certificate (base64 DER) and its id.
    include_resource_data: bool = False
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    # Created with 'Prefer: IdType="ImmutableId"' (outlook-immutable-id.md): its notifications name
    # Outlook items by immutable id. Not part of Graph's representation; the control API shows it.
    immutable_ids: bool = False

    def to_json(self, graph_url: str | None = None) -> dict[str, Any]:
        """Graph's representation (``graph_url`` adds the ``@odata.context``)."""
        body: dict[str, Any] = {}
        if graph_url:
            body["@odata.context"] = f"{graph_url}/$metadata#subscriptions/$entity"
        body.update(
            {
                "id": self.id,
                "resource": self.resource,
                "applicationId": self.application_id,
                "changeType": self.change_type,
                "clientState": self.client_state,
                "notificationUrl": self.notification_url,
                "notificationQueryOptions": None,
                "lifecycleNotificationUrl": self.lifecycle_url,
                "expirationDateTime": graph_time(self.expiration),
                "creatorId": self.creator_id,
                "includeResourceData": self.include_resource_data,
                "latestSupportedTlsVersion": self.tls_version,
                "encryptionCertificate": None,
                "encryptionCertificateId": self.encryption_certificate_id,
                "notificationUrlAppId": None,
            }
        )
        return body


def parse_resource(resource: str) -> tuple[str, str]:
    """Return (kind, key) for a drive-root resource: kind is drives, users or sites."""
    m = _RESOURCE.match(resource.strip())
    if m is None:
        raise GraphError(
            400,
            "InvalidRequest",
            f"Resource '{resource}' is not supported. Only drive root folders "
            "('drives/{id}/root', 'users/{id}/drive/root', "
            "'sites/{id}/drive/root') are simulated.",
        )
    if m.group("me"):
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    if m.group("drives"):
        return "drives", m.group("drive_id")
    return m.group("kind").lower(), m.group("owner")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: Any, field: str) -> str:
    """Validate a notification URL: absolute https, http on a loopback host, or an Event Grid partner topic."""
    if not isinstance(url, str) or not url:
        raise GraphError(400, "InvalidRequest", f"{field} is a required property.")
    if is_eventgrid(url):
        parse_url(url, field)
        return url
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return url
    raise GraphError(400, "InvalidRequest", f"Invalid {field}: '{url}'. The URL must use the https scheme.")


def check_expiration(value: Any, now: datetime, limit: int = DRIVE_MAX_MINUTES) -> datetime:
    """Apply the lifetime rules: future, at most ``limit`` minutes (driveItem: 42,300), at least 45 min."""
    if not isinstance(value, str):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is a required property.")
    try:
        when = parse_time(value)
    except ValueError as exc:
        raise GraphError(
            400, "BadRequest", f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from exc
    if when <= now:
        raise GraphError(400, "InvalidRequest", "Subscription expiration can only be in the future.")
    if when > now + timedelta(minutes=limit):
        raise GraphError(400, "ExtensionError", f"Subscription expiration can only be {limit} minutes in the future.")
    return max(when, now + timedelta(minutes=MIN_MINUTES))


def build(body: Any, now: datetime, app_id: str, creator_id: str) -> tuple[Subscription, str, str]:
    """Validate a create request body; returns (subscription, resource kind, key)."""
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not body.get(name):
            raise GraphError(400, "InvalidRequest", f"{name} is a required property.")
    resource = str(body["resource"])
    rule = rule_for(resource)
    kind, key = (RULE_KIND, resource) if rule is not None else parse_resource(resource)
    change_type = str(body["changeType"])
    refused = [c.strip() for c in change_type.split(",") if rule is not None and c.strip() not in rule.change_types]
    if refused:
        allowed = ", ".join(sorted(rule.change_types)) if rule is not None else ""
        raise GraphError(
            400, "InvalidRequest", f"ChangeType '{change_type}' is not supported for {key}; supported: {allowed}."
        )
    if rule is None and [c.strip() for c in change_type.split(",")] != ["updated"]:
        raise GraphError(
            400,
            "InvalidRequest",
            f"ChangeType '{change_type}' is not supported for drive root items; only 'updated' is supported.",
        )
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > CLIENT_STATE_MAX):
        raise GraphError(400, "InvalidRequest", f"clientState cannot be longer than {CLIENT_STATE_MAX} characters.")
    notification_url = check_url(body["notificationUrl"], "notificationUrl")
    lifecycle = body.get("lifecycleNotificationUrl")
    lifecycle_url = None if lifecycle is None else check_url(lifecycle, "lifecycleNotificationUrl")
    if body.get("includeResourceData") and rule is None:
        raise GraphError(
            400, "InvalidRequest", "Rich notifications (includeResourceData) are not supported for driveItem resources."
        )
    include, certificate, certificate_id = check_encryption(body, rule)
    expiration = check_expiration(body["expirationDateTime"], now, max_minutes(resource, include))
    beyond = rule.lifecycle_required_after if rule is not None else None
    if beyond is not None and lifecycle_url is None and expiration > now + beyond:
        # GD concepts/teams-changenotifications-chatmessage.md (and every Teams resource's page).
        raise GraphError(
            400,
            "InvalidRequest",
            "lifecycleNotificationUrl is a required property for subscription creation on this resource"
            " when the expirationDateTime value is set to greater than 1 hour",
        )
    tls = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in ("v1_0", "v1_1", "v1_2", "v1_3"):
        raise GraphError(400, "InvalidRequest", f"Invalid latestSupportedTlsVersion '{tls}'.")
    sub = Subscription(
        id=str(uuid.uuid4()),
        resource=resource,
        change_type=change_type,
        notification_url=notification_url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        application_id=app_id,
        creator_id=creator_id,
        tls_version=tls,
        drive_id="",
        include_resource_data=include,
        encryption_certificate=certificate,
        encryption_certificate_id=certificate_id,
    )
    return sub, kind, key


class SubscriptionStore:
    """Active subscriptions; expired ones vanish when looked at."""

    def __init__(self) -> None:
        self.subs: dict[str, Subscription] = {}

    def prune(self, now: datetime) -> list[Subscription]:
        """Drop expired subscriptions; return what was dropped."""
        gone = [s for s in self.subs.values() if s.expiration <= now]
        for s in gone:
            del self.subs[s.id]
        return gone

    def get(self, sub_id: str, now: datetime, app_id: str | None = None) -> Subscription:
        """An active subscription, or 404 ``ResourceNotFound`` like Graph."""
        self.prune(now)
        sub = self.subs.get(sub_id)
        if sub is None or (app_id is not None and sub.application_id != app_id):
            raise GraphError(
                404,
                "ResourceNotFound",
                f"The object was not found. Subscription '{sub_id}' does not exist or has expired.",
            )
        return sub

    def for_app(self, app_id: str, now: datetime) -> list[Subscription]:
        """The app's active subscriptions, oldest first."""
        self.prune(now)
        return [s for s in self.subs.values() if s.application_id == app_id]

    def for_drive(self, drive_id: str, now: datetime) -> list[Subscription]:
        """Active subscriptions watching a drive."""
        self.prune(now)
        return [s for s in self.subs.values() if s.drive_id == drive_id]
