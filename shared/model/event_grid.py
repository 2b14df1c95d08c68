"""Graph's Event Grid channel: the partner topic a subscription names, and its events read as notifications (pure).

Graph delivers a subscription whose ``notificationUrl`` is
``EventGrid:?azuresubscriptionid=...&resourcegroup=...&partnertopic=...&location=...`` to that
Event Grid partner topic; Event Grid hands each notification on as a CloudEvent whose ``data``
is the change notification (learn azure/event-grid/subscribe-to-graph-api-events and the
per-source articles, e.g. azure/event-grid/one-drive-events).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.errors import EventGridEventError

WEBHOOK = "webhook"
EVENT_GRID = "eventGrid"
DELIVERIES = (WEBHOOK, EVENT_GRID)

# Microsoft.Graph.<Resource><Created|Updated|Deleted>: the change is the type's last word. The documented
# OneDrive event (Microsoft.Graph.DriveItemUpdated) carries no changeType in its data.
_CHANGE = re.compile(r"^Microsoft\.Graph\.[A-Za-z]+?(Created|Updated|Deleted)$")


@dataclass(frozen=True)
class PartnerTopic:
    """Where Graph sends a subscription's events: an Event Grid partner topic, by its coordinates."""

    azure_subscription_id: str
    resource_group: str
    name: str
    location: str

    @property
    def url(self) -> str:
        """The subscription's ``notificationUrl`` (and ``lifecycleNotificationUrl``) for this topic."""
        query = urlencode(
            {
                "azuresubscriptionid": self.azure_subscription_id,
                "resourcegroup": self.resource_group,
                "partnertopic": self.name,
                "location": self.location,
            }
        )
        return f"EventGrid:?{query}"


def is_event_grid_url(url: str) -> bool:
    """Whether a subscription's notificationUrl names an Event Grid partner topic."""
    return url[:10].lower() == "eventgrid:"


def change_type_of(event_type: str) -> str | None:
    """The changeType an event type stands for (``Microsoft.Graph.DriveItemUpdated`` -> ``updated``), or None."""
    found = _CHANGE.match(event_type)
    return found.group(1).lower() if found else None


def notification_of(event_type: str, data: object) -> dict[str, Any]:
    """The change (or lifecycle) notification a Graph CloudEvent carries, as the webhook path receives one.

    A lifecycle event is known by its data's ``lifecycleEvent`` whatever the type is named;
    a change notification without ``changeType`` takes it from ``ChangeType`` or else the type. Raises
    EventGridEventError when ``data`` is not a notification.
    """
    if not isinstance(data, Mapping):
        raise EventGridEventError("the event's data is not a JSON object")
    item = dict(data)
    if item.get("lifecycleEvent"):
        return item
    if not item.get("changeType"):
        # Outlook's documented example writes its data in the Outlook REST form (``ChangeType``).
        change = item.get("ChangeType") or change_type_of(event_type)
        if change is None:
            raise EventGridEventError(f"event type {event_type[:80]!r} names no change and data has no changeType")
        item["changeType"] = change
    return item
