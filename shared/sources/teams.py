"""Teams chat messages: a channel's messages, every channel's, and the tenant's chat messages.

App-only subscriptions on these resources must include resource data (Graph
refuses them otherwise), so every change arrives in its notification: decrypted,
it is committed like a one-item delta page (``notified``), against the item index,
so a duplicate keeps its id and a deletion after a restore gets a new one. Nothing
is read back from Graph: a pass over this source, which a renewal or the sweep may
still request, reads no page and finds no change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.clock import optional_time
from shared.model.catalog import TEAMS_ALL_CHANNEL_MESSAGES, TEAMS_CHANNEL_MESSAGES, TEAMS_CHAT_MESSAGES
from shared.model.changes import NO_STATE, NotifiedChange, Page, SourceChange, SourceState, Traits

KIND = "chatMessage"
# A notification's ``resource`` names the message: teams('t')/channels('c')/messages('m') or chats('c')/messages('m').
_MESSAGE_PATH = re.compile(
    r"^/?(?:teams\('(?P<team>[^']+)'\)/channels\('(?P<channel>[^']+)'\)|chats\('(?P<chat>[^']+)'\))/messages\('[^']+'\)",
    re.IGNORECASE,
)


class TeamsMessageSource:
    """The change source for teams/{id}/channels/{id}/messages, teams/getAllMessages and chats/getAllMessages."""

    kind = KIND
    traits = Traits(notified_only=True)

    def handles(self, resource: str) -> bool:
        """True for a channel's messages, or the tenant's channel or chat messages."""
        path = resource.strip().strip("/")
        patterns = (TEAMS_CHANNEL_MESSAGES, TEAMS_ALL_CHANNEL_MESSAGES, TEAMS_CHAT_MESSAGES)
        return any(pattern.match(path) for pattern in patterns)

    def notified(
        self, resource: str, notification: Mapping[str, Any], data: Mapping[str, Any]
    ) -> NotifiedChange | None:
        """The message a notification tells, in its channel or chat, versioned by its etag."""
        item_id = data.get("id")
        if not isinstance(item_id, str) or not item_id:
            return None
        container = container_of(data, resource, notification.get("resource"))
        if notification.get("changeType") == "deleted":
            return NotifiedChange(container, SourceChange(item_id, None, None))
        item = dict(data)
        return NotifiedChange(
            container,
            SourceChange(
                item_id,
                version_of(item),
                item,
                created_at=optional_time(item.get("createdDateTime")),
                modified_at=optional_time(item.get("lastModifiedDateTime")),
            ),
        )

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """No page to read: changes come with their notifications (resource data is required)."""
        return Page(container_id=resource.strip().strip("/"), changes=[], next_link=None, delta_link="resource-data")


def container_of(message: Mapping[str, Any], subscribed: str, path: object = None) -> str:
    """The chat or channel a message belongs to; else the subscribed resource.

    ``path`` is the notification's ``resource``: a deletion carries no message, only that.
    """
    channel = message.get("channelIdentity")
    if isinstance(channel, Mapping) and channel.get("channelId"):
        return f"{channel.get('teamId', '')}/{channel['channelId']}"
    chat = message.get("chatId")
    if isinstance(chat, str) and chat:
        return chat
    named = _MESSAGE_PATH.match(path) if isinstance(path, str) else None
    if named is not None:
        return f"{named['team']}/{named['channel']}" if named["team"] else str(named["chat"])
    return subscribed.strip().strip("/")


def version_of(message: Mapping[str, Any]) -> str:
    """What changes with every change of a message: its etag, else its last modification time."""
    for field in ("@odata.etag", "etag", "lastModifiedDateTime", "deletedDateTime"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""
