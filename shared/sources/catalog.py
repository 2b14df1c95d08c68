"""Which subscription resources this app can read, and the change types Graph accepts for them (pure).

Settings check GRAPH_SUBSCRIPTIONS against this list without importing any SDK;
the change sources match resources with the same patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..sharepoint.lists import LIST_RESOURCE as SHAREPOINT_WEBHOOK_LIST

# drives/{id}/root, users/{id}/drive/root, groups/{id}/drive/root, sites/{id}/drive/root.
DRIVE_ROOT = re.compile(r"^(?:drives/(?P<drive>[^/]+)|(?P<owner>users|groups|sites)/(?P<owner_id>[^/]+)/drive)/root$")
# sites/{site-id}/lists/{list-id}: a SharePoint list (list items, by listItem delta).
SHAREPOINT_LIST = re.compile(r"^sites/(?P<site>[^/]+)/lists/(?P<list>[^/]+)$")
# users or groups: the tenant's directory objects (by users or groups delta).
DIRECTORY = re.compile(r"^(?P<collection>users|groups)$")
USERS = re.compile(r"^users$")
GROUPS = re.compile(r"^groups$")

# teams/{id}/channels/{id}/messages and chats/getAllMessages (the tenant's chats).
TEAMS_CHANNEL_MESSAGES = re.compile(r"^teams/(?P<team>[^/]+)/channels/(?P<channel>[^/]+)/messages$")
TEAMS_CHAT_MESSAGES = re.compile(r"^chats/getAllMessages$")

# Outlook (shared/sources/outlook/): users/{id}/mailFolders/{id}/messages, users/{id}/messages (every folder),
# users/{id}/events or users/{id}/calendar/events (the primary calendar), users/{id}/contacts (the default
# contacts folder) and users/{id}/contactFolders/{id}/contacts.
OUTLOOK_FOLDER_MESSAGES = re.compile(r"^users/(?P<user>[^/]+)/mailFolders/(?P<folder>[^/]+)/messages$", re.IGNORECASE)
OUTLOOK_MAILBOX_MESSAGES = re.compile(r"^users/(?P<user>[^/]+)/messages$", re.IGNORECASE)
OUTLOOK_EVENTS = re.compile(r"^users/(?P<user>[^/]+)/(?:calendar/)?events$", re.IGNORECASE)
OUTLOOK_CONTACTS = re.compile(r"^users/(?P<user>[^/]+)/(?:contactFolders/(?P<folder>[^/]+)/)?contacts$", re.IGNORECASE)
_OUTLOOK_CHANGES = frozenset({"created", "updated", "deleted"})


@dataclass(frozen=True)
class ReadableResource:
    """A resource pattern some change source reads, and the change types Graph allows on it."""

    name: str
    pattern: re.Pattern[str]
    change_types: frozenset[str]
    # The least-privileged application permission that reads it (the README lists them).
    permission: str = ""
    # Whether Graph can include resource data (rich notifications) for it.
    resource_data: bool = False
    # Whether app-only subscriptions must ask for resource data (Graph refuses them otherwise).
    resource_data_required: bool = False


# One entry per kind a change source reads; each kind's module adds its own entry here.
READABLE: tuple[ReadableResource, ...] = (
    # Graph accepts only 'updated' on drive roots (subscription resource documentation).
    ReadableResource("drive root", DRIVE_ROOT, frozenset({"updated"}), "Files.Read.All"),
    # SharePoint's own REST list webhooks (SHAREPOINT_SUBSCRIPTIONS, shared/sharepoint): no Graph change type.
    ReadableResource("SharePoint list webhook", SHAREPOINT_WEBHOOK_LIST, frozenset(), "Sites.Read.All"),
    # Lists: only 'updated', like drives; Graph's permission table for list subscriptions
    # (subscription-post-subscriptions) names Sites.ReadWrite.All, not Sites.Read.All.
    ReadableResource("SharePoint list", SHAREPOINT_LIST, frozenset({"updated"}), "Sites.ReadWrite.All"),
    # Users and groups: 'updated' and 'deleted' (Graph refuses 'created' on them).
    ReadableResource("user collection", USERS, frozenset({"updated", "deleted"}), "User.Read.All"),
    ReadableResource("group collection", GROUPS, frozenset({"updated", "deleted"}), "Group.Read.All"),
    # Teams chatMessage, app-only: resource data and encryption are required (teams-subscription-notes.md).
    ReadableResource(
        "Teams channel messages",
        TEAMS_CHANNEL_MESSAGES,
        frozenset({"created", "updated", "deleted"}),
        "ChannelMessage.Read.All",
        resource_data=True,
        resource_data_required=True,
    ),
    ReadableResource(
        "Teams chat messages",
        TEAMS_CHAT_MESSAGES,
        frozenset({"created", "updated", "deleted"}),
        "Chat.Read.All",
        resource_data=True,
        resource_data_required=True,
    ),
    # Outlook message, event and contact: created, updated and deleted, with or without resource
    # data (subscription-post-subscriptions.md, application permissions).
    ReadableResource("Outlook folder messages", OUTLOOK_FOLDER_MESSAGES, _OUTLOOK_CHANGES, "Mail.Read", True),
    ReadableResource("Outlook mailbox messages", OUTLOOK_MAILBOX_MESSAGES, _OUTLOOK_CHANGES, "Mail.Read", True),
    ReadableResource("Outlook events", OUTLOOK_EVENTS, _OUTLOOK_CHANGES, "Calendars.Read", True),
    ReadableResource("Outlook contacts", OUTLOOK_CONTACTS, _OUTLOOK_CHANGES, "Contacts.Read", True),
)


def readable_kind(resource: str) -> ReadableResource | None:
    """The readable resource kind ``resource`` belongs to, or None when no source reads it."""
    path = resource.strip().strip("/")
    for kind in READABLE:
        if kind.pattern.match(path):
            return kind
    return None


def readable(resource: str) -> bool:
    """True when some change source reads ``resource``."""
    return readable_kind(resource) is not None
