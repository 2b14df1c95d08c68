"""Teams chat messages: a channel's messages, every channel's, and the tenant's chat messages.

App-only subscriptions on these resources must include resource data (Graph
refuses them otherwise), so every change arrives decrypted in its notification and
becomes an event there (see security/resource_data.py): nothing is read back from
Graph. A pass over this source, which a renewal or the sweep may still request,
therefore reads no page and finds no change.
"""

from __future__ import annotations

from .catalog import TEAMS_ALL_CHANNEL_MESSAGES, TEAMS_CHANNEL_MESSAGES, TEAMS_CHAT_MESSAGES
from .contract import Page

KIND = "chatMessage"


class TeamsMessageSource:
    """The change source for teams/{id}/channels/{id}/messages, teams/getAllMessages and chats/getAllMessages."""

    kind = KIND

    def handles(self, resource: str) -> bool:
        """True for a channel's messages, or the tenant's channel or chat messages."""
        path = resource.strip().strip("/")
        patterns = (TEAMS_CHANNEL_MESSAGES, TEAMS_ALL_CHANNEL_MESSAGES, TEAMS_CHAT_MESSAGES)
        return any(pattern.match(path) for pattern in patterns)

    async def page(self, resource: str, link: str | None) -> Page:
        """No page to read: changes come with their notifications (resource data is required)."""
        return Page(container_id=resource.strip().strip("/"), changes=[], next_link=None, delta_link="resource-data")
