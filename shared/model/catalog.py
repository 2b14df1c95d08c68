"""Which subscription resources this app can read, and the change types Graph accepts for them (pure).

Settings check GRAPH_SUBSCRIPTIONS against this list without importing any SDK;
the change sources match resources with the same patterns. A resource may end in an
OData query Graph documents for its kind (``chats/getAllMessages?model=B``): patterns
match the path, and ``query_problem`` checks the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.model.sharepoint import LIST_RESOURCE as SHAREPOINT_WEBHOOK_LIST

# drives/{id}/root, users/{id}/drive/root, groups/{id}/drive/root, sites/{id}/drive/root.
DRIVE_ROOT = re.compile(r"^(?:drives/(?P<drive>[^/]+)|(?P<owner>users|groups|sites)/(?P<owner_id>[^/]+)/drive)/root$")
# sites/{site-id}/lists/{list-id}: a SharePoint list (list items, by listItem delta).
SHAREPOINT_LIST = re.compile(r"^sites/(?P<site>[^/]+)/lists/(?P<list>[^/]+)$")
# users or groups: the tenant's directory objects (by users or groups delta).
DIRECTORY = re.compile(r"^(?P<collection>users|groups)$")
USERS = re.compile(r"^users$")
GROUPS = re.compile(r"^groups$")

# teams/{id}/channels/{id}/messages, teams/getAllMessages (every channel's) and chats/getAllMessages (every chat's).
TEAMS_CHANNEL_MESSAGES = re.compile(r"^teams/(?P<team>[^/]+)/channels/(?P<channel>[^/]+)/messages$")
TEAMS_ALL_CHANNEL_MESSAGES = re.compile(r"^teams/getAllMessages$")
TEAMS_CHAT_MESSAGES = re.compile(r"^chats/getAllMessages$")

# Outlook (shared/sources/outlook/): users/{id}/mailFolders/{id}/messages, users/{id}/messages (every folder),
# users/{id}/events or users/{id}/calendar/events (the primary calendar), users/{id}/contacts (the default
# contacts folder) and users/{id}/contactFolders/{id}/contacts.
OUTLOOK_FOLDER_MESSAGES = re.compile(r"^users/(?P<user>[^/]+)/mailFolders/(?P<folder>[^/]+)/messages$", re.IGNORECASE)
OUTLOOK_MAILBOX_MESSAGES = re.compile(r"^users/(?P<user>[^/]+)/messages$", re.IGNORECASE)
OUTLOOK_EVENTS = re.compile(r"^users/(?P<user>[^/]+)/(?:calendar/)?events$", re.IGNORECASE)
OUTLOOK_CONTACTS = re.compile(r"^users/(?P<user>[^/]+)/(?:contactFolders/(?P<folder>[^/]+)/)?contacts$", re.IGNORECASE)
# Outlook items by the id that survives a move between folders (outlook-immutable-id.md): asked for
# on every delta request and when subscribing, so notifications and delta pages name an item alike.
IMMUTABLE_IDS = 'IdType="ImmutableId"'
_OUTLOOK_CHANGES = frozenset({"created", "updated", "deleted"})

# The query options Graph documents on subscription resources, by name (lower case):
# - model (A or B): the licensing model of Teams' metered tenant-wide APIs; without it Graph runs the
#   subscription in evaluation mode, with a capped quota (GD includes/teams-model-A-and-B-disclaimer.md);
# - $select: the properties rich Outlook notifications carry, "Do not include ... $select=Body,UniqueBody"
#   (GD concepts/outlook-change-notifications-overview.md, "Include resource data in notification payload");
# - $search and $filter: keyword and mention filters on a channel's messages
#   (GD concepts/teams-changenotifications-chatmessage.md, "Subscribe to messages in a channel").
MODEL = "model"
SELECT = "$select"
_SELECTS = frozenset({SELECT})
_TEAMS_MODELS = frozenset({"A", "B"})
_SELECT_REFUSED = frozenset({"body", "uniquebody"})
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ReadableResource:
    """A resource pattern some change source reads, and the change types Graph allows on it."""

    name: str
    pattern: re.Pattern[str]
    change_types: frozenset[str]
    # The least-privileged application permission that reads it (docs/sources.md lists them).
    permission: str = ""
    # Whether Graph can include resource data (rich notifications) for it.
    resource_data: bool = False
    # Whether app-only subscriptions must ask for resource data (Graph refuses them otherwise).
    resource_data_required: bool = False
    # The query options Graph documents after this kind's resource (lower case; see above).
    query_options: frozenset[str] = frozenset()
    # Outlook items: subscribed with 'Prefer: IdType="ImmutableId"', so notifications name an item
    # by the same id its delta does (outlook-immutable-id.md, "Immutable ID with change notifications").
    immutable_ids: bool = False


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
        query_options=frozenset({"$search", "$filter"}),
    ),
    # Every channel's messages and replies in the tenant: application permission ChannelMessage.Read.All,
    # resource data supported (GD concepts/teams-changenotifications-chatmessage.md, "across all channels").
    ReadableResource(
        "Teams messages of all channels",
        TEAMS_ALL_CHANNEL_MESSAGES,
        frozenset({"created", "updated", "deleted"}),
        "ChannelMessage.Read.All",
        resource_data=True,
        resource_data_required=True,
        query_options=frozenset({MODEL}),
    ),
    ReadableResource(
        "Teams chat messages",
        TEAMS_CHAT_MESSAGES,
        frozenset({"created", "updated", "deleted"}),
        "Chat.Read.All",
        resource_data=True,
        resource_data_required=True,
        query_options=frozenset({MODEL}),
    ),
    # Outlook message, event and contact: created, updated and deleted, with or without resource
    # data (subscription-post-subscriptions.md, application permissions).
    *(
        ReadableResource(name, pattern, _OUTLOOK_CHANGES, permission, True, False, _SELECTS, immutable_ids=True)
        for name, pattern, permission in (
            ("Outlook folder messages", OUTLOOK_FOLDER_MESSAGES, "Mail.Read"),
            ("Outlook mailbox messages", OUTLOOK_MAILBOX_MESSAGES, "Mail.Read"),
            ("Outlook events", OUTLOOK_EVENTS, "Calendars.Read"),
            ("Outlook contacts", OUTLOOK_CONTACTS, "Contacts.Read"),
        )
    ),
)


def split_resource(resource: str) -> tuple[str, str]:
    """(path, query) of a subscription resource: ``chats/getAllMessages?model=B`` gives ``model=B`` apart."""
    path, _, query = resource.partition("?")
    return path.strip().strip("/"), query.strip()


def readable_kind(resource: str) -> ReadableResource | None:
    """The readable resource kind ``resource`` belongs to (its query aside), or None when no source reads it."""
    path, _ = split_resource(resource)
    for kind in READABLE:
        if kind.pattern.match(path):
            return kind
    return None


def query_problem(kind: ReadableResource, query: str, include_resource_data: bool) -> str | None:
    """Why Graph would refuse (or ignore) ``query`` on a ``kind`` resource; None when it is documented."""
    if not query:
        return None
    allowed = ", ".join(sorted(kind.query_options)) or "none"
    seen: set[str] = set()
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        option = name.strip().lower()
        if option not in kind.query_options:
            return f"query option {name.strip()!r} is not documented for a {kind.name} (allowed: {allowed})"
        if option in seen:
            return f"query option {name.strip()!r} is given twice"
        seen.add(option)
        if not equals or not value.strip():
            return f"query option {name.strip()!r} needs a value"
        if option == MODEL and value.strip() not in _TEAMS_MODELS:
            return f"model must be A or B (Teams licensing models), not {value.strip()!r}"
        if option == SELECT:
            problem = _select_problem(value, include_resource_data)
            if problem is not None:
                return problem
    return None


def _select_problem(value: str, include_resource_data: bool) -> str | None:
    if not include_resource_data:
        return "$select chooses what rich notifications carry: it needs includeResourceData"
    names = [name.strip() for name in value.split(",")]
    if not all(_PROPERTY.match(name) for name in names):
        return f"$select must list property names separated by commas, not {value!r}"
    refused = [name for name in names if name.lower() in _SELECT_REFUSED]
    if refused:
        return f"Graph refuses $select={','.join(refused)} in a subscription's resource"
    return None
