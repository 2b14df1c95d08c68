"""Microsoft Graph's Event Grid channel: `EventGrid:` notification URLs, partner topics and CloudEvents.

A subscription whose ``notificationUrl`` (or ``lifecycleNotificationUrl``) is
``EventGrid:?azuresubscriptionid=...&resourcegroup=...&partnertopic=...&location=...`` has
no validation handshake; Graph creates the partner topic on the first subscription that
names it (learn azure/event-grid/subscribe-to-graph-api-events). A topic starts
``NeverActivated``; the customer activates it and creates an event subscription to a handler
(here: ``POST /_sim/eventgrid/topics/activate`` with a destination URL). Until then, and
while deactivated or without a destination, Event Grid has nowhere to send an event: the
simulator counts it as dropped (``droppedNotActivated``), the documented "activate so that
your events start flowing".

Each notification becomes one CloudEvent shaped as the Event Grid articles show
(azure/event-grid/microsoft-entra-events, outlook-events, teams-events, one-drive-events,
share-point-events): ``type`` per resource and change, ``source``
``/tenants/{tenant}/applications/{app}``, ``subject``, ``time``, ``id``, ``specversion``
1.0, ``datacontenttype`` application/json and ``data`` the change notification.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .clock import graph_time
from .errors import GraphError

SCHEME = "eventgrid:"
PARAMS = ("azuresubscriptionid", "resourcegroup", "partnertopic", "location")
# A location is a region's name (westcentralus), never its display name (learn subscribe-to-graph-api-events).
_LOCATION = re.compile(r"^[a-z0-9]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()-]{0,89}$")
NEVER_ACTIVATED, ACTIVATED, DEACTIVATED = "NeverActivated", "Activated", "Deactivated"


def is_eventgrid(url: str | None) -> bool:
    """Whether a notification URL names an Event Grid partner topic."""
    return bool(url) and str(url).lower().startswith(SCHEME)


@dataclass(frozen=True)
class TopicKey:
    """Where a partner topic lives: Azure subscription, resource group, name and region."""

    azure_subscription_id: str
    resource_group: str
    name: str
    location: str

    @property
    def resource_id(self) -> str:
        """The topic's ARM resource id."""
        return (
            f"/subscriptions/{self.azure_subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.EventGrid/partnerTopics/{self.name}"
        )

    def matches(self, other: TopicKey) -> bool:
        """Same topic: ARM names compare without case."""
        return _folded(self) == _folded(other)


def _folded(key: TopicKey) -> tuple[str, ...]:
    return (key.azure_subscription_id.lower(), key.resource_group.lower(), key.name.lower(), key.location)


def parse_url(url: str, field_name: str) -> TopicKey:
    """The partner topic an ``EventGrid:`` URL names, or Graph's 400 for a malformed one."""
    parts = urlsplit(url)
    values = {k.lower(): v.strip() for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    missing = [p for p in PARAMS if not values.get(p)]
    problem = ""
    if parts.path or parts.netloc:
        problem = "nothing may stand between 'EventGrid:' and '?'"
    elif missing:
        problem = f"{', '.join(missing)} missing"
    elif not _is_guid(values["azuresubscriptionid"]):
        problem = "azuresubscriptionid is not a GUID"
    elif not _LOCATION.match(values["location"]):
        problem = "location must be a region name such as westcentralus, not a display name"
    elif not _NAME.match(values["partnertopic"]):
        problem = "partnertopic is not a valid resource name"
    if problem:
        raise GraphError(
            400,
            "InvalidRequest",
            f"Invalid {field_name}: {problem}. Expected EventGrid:?azuresubscriptionid=<guid>"
            "&resourcegroup=<name>&partnertopic=<name>&location=<region>.",
        )
    return TopicKey(values["azuresubscriptionid"], values["resourcegroup"], values["partnertopic"], values["location"])


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@dataclass
class PartnerTopic:
    """One partner topic and its (single) event subscription's destination."""

    key: TopicKey
    source: str  # /tenants/{tenant}/applications/{app} of the subscription that created it
    created: datetime
    activation_state: str = NEVER_ACTIVATED
    destination: str | None = None
    published: int = 0
    dropped_not_activated: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    pending: int = 0

    def accepts(self) -> bool:
        """Whether an event published now has somewhere to go."""
        return self.activation_state == ACTIVATED and bool(self.destination)

    def as_json(self) -> dict[str, Any]:
        """The topic as the control API shows it."""
        return {
            "id": self.key.resource_id,
            "name": self.key.name,
            "azureSubscriptionId": self.key.azure_subscription_id,
            "resourceGroup": self.key.resource_group,
            "location": self.key.location,
            "source": self.source,
            "createdDateTime": graph_time(self.created),
            "activationState": self.activation_state,
            "destination": self.destination,
            "published": self.published,
            "droppedNotActivated": self.dropped_not_activated,
            "delivered": self.delivered,
            "deadLettered": self.dead_lettered,
            "pending": self.pending,
        }


@dataclass
class TopicRegistry:
    """The partner topics Graph created, across all tenants (Azure resources, not a tenant's)."""

    topics: list[PartnerTopic] = field(default_factory=list)

    def find(self, key: TopicKey) -> PartnerTopic | None:
        """The topic with this key, if Graph created it."""
        return next((t for t in self.topics if t.key.matches(key)), None)

    def ensure(self, key: TopicKey, source: str, now: datetime) -> PartnerTopic:
        """The topic, created on first use as Graph creates it with the first subscription."""
        topic = self.find(key)
        if topic is None:
            topic = PartnerTopic(key=key, source=source, created=now)
            self.topics.append(topic)
        return topic

    def clear(self) -> None:
        """Forget every topic (reset)."""
        self.topics.clear()
