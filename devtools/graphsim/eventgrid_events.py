"""Change and lifecycle notifications as the CloudEvents Event Grid delivers for Microsoft Graph (pure).

Types and subjects follow the Event Grid articles (MicrosoftDocs/azure-docs articles/event-grid/):
- users, groups (microsoft-entra-events.md): ``Microsoft.Graph.User|Group{Updated,Deleted}``,
  subject ``Users/{id}`` / ``Groups/{id}``. A creation arrives as ``...Updated``: the article's
  note ("Currently, UserUpdated or GroupUpdated event is generated when a user or a group is
  created. It's a known issue"); ``data.changeType`` still says ``created``.
- Outlook (outlook-events.md): ``Microsoft.Graph.Event|Contact{Created,Updated,Deleted}``, subject
  ``Events/{id}`` / ``Contacts/{id}``; messages are listed as a source but their types are not
  documented: ``Microsoft.Graph.Message{...}``, subject ``Messages/{id}``, by the same pattern.
- Teams (teams-events.md): ``Microsoft.Graph.ChatMessage{Created,Updated,Deleted}``; no example,
  so the subject is the notification's ``resource``.
- OneDrive (one-drive-events.md): ``Microsoft.Graph.DriveItemUpdated``, subject
  ``driveItem/{id}``; SharePoint lists (share-point-events.md): ``Microsoft.Graph.ListUpdated``,
  subject ``listItem/{id}``. Their documented ``data`` has no ``changeType`` and no
  ``subscriptionExpirationDateTime`` but ``expirationDateTime`` and a ``resourceData`` naming
  the type: the simulator sends exactly that.
- Lifecycle events: ``Microsoft.Graph.SubscriptionReauthorizationRequired`` is documented
  (subscribe-to-graph-api-events.md; microsoftgraph/msgraph-sample-eventgrid-notifications-dotnet);
  the others are not, so ``Microsoft.Graph.SubscriptionRemoved`` and ``Microsoft.Graph.SubscriptionMissed``
  by the same pattern. ``data`` is the lifecycle notification, with ``lifecycleEvent``; subject
  ``Subscriptions/{subscriptionId}``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from .clock import graph_time

# The private key under which state.py hands a drive notification's subject (the root item's id).
SUBJECT_KEY = "@sim.subject"
_KINDS = {
    "user": "User",
    "group": "Group",
    "message": "Message",
    "event": "Event",
    "contact": "Contact",
    "chatmessage": "ChatMessage",
}
_PLURAL_SUBJECT = {"User": "Users", "Group": "Groups", "Message": "Messages", "Event": "Events", "Contact": "Contacts"}
_LIST = re.compile(r"(?:^|/)sites/[^/]+/lists/(?P<list>[^/?]+)/?$", re.IGNORECASE)
_LIFECYCLE = {
    "reauthorizationRequired": "SubscriptionReauthorizationRequired",
    "subscriptionRemoved": "SubscriptionRemoved",
    "missed": "SubscriptionMissed",
}
_VERB = {"created": "Created", "updated": "Updated", "deleted": "Deleted"}


def _kind(item: dict[str, Any]) -> str:
    """DriveItem, List, or the kind ``resourceData`` names (User, Message, ChatMessage, ...)."""
    data = item.get("resourceData")
    if isinstance(data, dict):
        odata = str(data.get("@odata.type") or "").rpartition(".")[2].lower()
        if odata in _KINDS:
            return _KINDS[odata]
    if _LIST.search(str(item.get("resource") or "")):
        return "List"
    return "DriveItem"


def event_type(item: dict[str, Any]) -> str:
    """The CloudEvent ``type`` of a notification."""
    lifecycle = item.get("lifecycleEvent")
    if lifecycle:
        name = _LIFECYCLE.get(str(lifecycle), "Subscription" + str(lifecycle)[:1].upper() + str(lifecycle)[1:])
        return f"Microsoft.Graph.{name}"
    kind = _kind(item)
    if kind in ("DriveItem", "List"):
        return f"Microsoft.Graph.{kind}Updated"  # the only type these articles list
    verb = _VERB.get(str(item.get("changeType") or "updated"), "Updated")
    if kind in ("User", "Group") and verb == "Created":
        verb = "Updated"  # the documented known issue
    return f"Microsoft.Graph.{kind}{verb}"


def _subject(item: dict[str, Any]) -> str:
    if item.get("lifecycleEvent"):
        return f"Subscriptions/{item.get('subscriptionId')}"
    kind = _kind(item)
    if kind == "DriveItem":
        return str(item.get(SUBJECT_KEY) or f"driveItem/{item.get('resource')}")
    if kind == "List":
        found = _LIST.search(str(item.get("resource") or ""))
        return f"listItem/{found.group('list') if found else ''}"
    data = item.get("resourceData") or {}
    if kind in _PLURAL_SUBJECT and data.get("id"):
        return f"{_PLURAL_SUBJECT[kind]}/{data['id']}"
    return str(item.get("resource") or "")


def _data(item: dict[str, Any]) -> dict[str, Any]:
    """The notification as ``data``; drive and list notifications in their documented form."""
    body = {k: v for k, v in item.items() if k != SUBJECT_KEY}
    kind = _kind(item)
    if item.get("lifecycleEvent") or kind not in ("DriveItem", "List"):
        return body
    body.pop("changeType", None)
    body["expirationDateTime"] = body.pop("subscriptionExpirationDateTime", None)
    body["resourceData"] = {
        "@odata.type": "#Microsoft.Graph.driveItem" if kind == "DriveItem" else "#Microsoft.Graph.listItem"
    }
    return body


def cloud_event(item: dict[str, Any], tenant_id: str, application_id: str, now: datetime) -> dict[str, Any]:
    """One notification (validationTokens already in it, for rich ones) as a structured CloudEvent."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type(item),
        "source": f"/tenants/{item.get('tenantId') or tenant_id}/applications/{application_id}",
        "subject": _subject(item),
        "time": graph_time(now),
        "datacontenttype": "application/json",
        "specversion": "1.0",
        "data": _data(item),
    }
