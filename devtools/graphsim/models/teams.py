"""Teams in the simulator: teams with channels, chats, their messages, and rich change notifications.

Subscriptions on ``teams/{id}/channels/{id}/messages``, ``teams/getAllMessages`` and
``chats/getAllMessages`` (teams-changenotifications-chatmessage.md; the last two take
``?model=A`` or ``?model=B``) get one notification per change. With
``includeResourceData`` each carries the message encrypted with the subscription's
certificate (state.py, rich.py); a deletion carries only ``resourceData`` (id and
type), no ``encryptedContent``. The batch's ``validationTokens`` are added at delivery
(rich.py RichDelivery). Graph refuses an app-only ``chats/getAllMessages``
subscription without resource data, and so does the simulator, and one that lasts
more than an hour without a ``lifecycleNotificationUrl``.

The control API (``/_sim/teams``, ``/_sim/chats``: routes/control_teams.py) creates
teams, channels and chats and posts, edits and deletes messages.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import graph_time
from .subscriptions import RESOURCE_RULES, ResourceRule

TEAMS_MAX_MINUTES = 4320
# "If you request a subscription expirationDateTime that is more than 1 hour in the future, you must
# subscribe to lifecycle notifications" (GD concepts/teams-changenotifications-chatmessage.md).
LIFECYCLE_REQUIRED_AFTER = timedelta(hours=1)
CHANGES = frozenset({"created", "updated", "deleted"})
CHAT_MESSAGE_TYPE = "#Microsoft.Graph.chatMessage"
SENDER = {"id": "8ea0e38b-efb3-4757-924a-5f94061cf8c2", "displayName": "Robin Kline"}


@dataclass
class Conversation:
    """A channel (``team_id`` set) or a chat, with its messages by id."""

    id: str
    team_id: str | None = None
    display_name: str = ""
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, message_id: str) -> str:
        """The message as Graph names it in a notification's ``resource`` and ``@odata.id``."""
        if self.team_id is not None:
            return f"teams('{self.team_id}')/channels('{self.id}')/messages('{message_id}')"
        return f"chats('{self.id}')/messages('{message_id}')"

    def subscribed(self) -> frozenset[str]:
        """The subscription resources that hear about this conversation's messages (lower case, no query)."""
        if self.team_id is not None:
            return frozenset({f"teams/{self.team_id}/channels/{self.id}/messages".lower(), "teams/getallmessages"})
        return frozenset({"chats/getallmessages"})


Listener = Callable[[Conversation, str, dict[str, Any]], None]


class TeamsStore:
    """Teams (each with channels) and chats."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self.teams: dict[str, dict[str, Conversation]] = {}
        self.chats: dict[str, Conversation] = {}
        self.listeners: list[Listener] = []
        self._last_id = 0

    def clear(self) -> None:
        """Forget every team and chat (reset)."""
        self.teams.clear()
        self.chats.clear()

    def add_team(self, team_id: str | None = None) -> str:
        """A new team with no channel yet; returns its id."""
        team = team_id or str(uuid.uuid4())
        if team in self.teams:
            raise ValueError(f"team {team} exists")
        self.teams[team] = {}
        return team

    def add_channel(self, team_id: str, name: str, channel_id: str | None = None) -> Conversation:
        """A new standard channel in a team (``channel_id`` chosen by Graph unless given)."""
        channel = Conversation(channel_id or f"19:{secrets.token_hex(16)}@thread.tacv2", team_id, name)
        self.teams[team_id][channel.id] = channel
        return channel

    def add_chat(self, chat_id: str | None = None) -> Conversation:
        """A new group chat."""
        chat = Conversation(chat_id or f"19:{secrets.token_hex(16)}@thread.v2")
        if chat.id in self.chats:
            raise ValueError(f"chat {chat.id} exists")
        self.chats[chat.id] = chat
        return chat

    def channel(self, team_id: str, channel_id: str) -> Conversation | None:
        """A team's channel, or None."""
        return self.teams.get(team_id, {}).get(channel_id)

    def post(self, where: Conversation, content: str, content_type: str = "text") -> dict[str, Any]:
        """A new message, as Graph renders a chatMessage."""
        now = self._now()
        message_id = self._next_id(now)
        message: dict[str, Any] = {
            "id": message_id,
            "replyToId": None,
            "etag": message_id,
            "messageType": "message",
            "createdDateTime": graph_time(now),
            "lastModifiedDateTime": graph_time(now),
            "lastEditedDateTime": None,
            "deletedDateTime": None,
            "subject": None,
            "summary": None,
            "chatId": None if where.team_id is not None else where.id,
            "importance": "normal",
            "locale": "en-us",
            "webUrl": None,
            "policyViolation": None,
            "from": {
                "application": None,
                "device": None,
                "user": {
                    "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                    **SENDER,
                    "userIdentityType": "aadUser",
                },
            },
            "body": {"contentType": content_type, "content": content},
            "channelIdentity": None if where.team_id is None else {"teamId": where.team_id, "channelId": where.id},
            "attachments": [],
            "mentions": [],
            "reactions": [],
        }
        where.messages[message_id] = message
        self._changed(where, "created", message)
        return message

    def edit(self, where: Conversation, message_id: str, content: str) -> dict[str, Any]:
        """Change a message's text; raise KeyError for an unknown or deleted message."""
        message = self._live(where, message_id)
        now = self._now()
        message["body"] = message["body"] | {"content": content}
        message["lastModifiedDateTime"] = message["lastEditedDateTime"] = graph_time(now)
        message["etag"] = self._next_id(now)
        self._changed(where, "updated", message)
        return message

    def delete(self, where: Conversation, message_id: str) -> None:
        """Soft-delete a message, as Teams does."""
        message = self._live(where, message_id)
        now = self._now()
        message["deletedDateTime"] = message["lastModifiedDateTime"] = graph_time(now)
        self._changed(where, "deleted", message)

    def undelete(self, where: Conversation, message_id: str) -> dict[str, Any]:
        """Undo a soft delete (chatMessage: undoSoftDelete): the message is back, with a new etag.

        Graph's docs name no change type for it; the simulator sends ``updated`` with the message.
        """
        message = where.messages.get(message_id)
        if message is None or message["deletedDateTime"] is None:
            raise KeyError(message_id)
        now = self._now()
        message["deletedDateTime"] = None
        message["lastModifiedDateTime"] = graph_time(now)
        message["etag"] = self._next_id(now)
        self._changed(where, "updated", message)
        return message

    def _live(self, where: Conversation, message_id: str) -> dict[str, Any]:
        message = where.messages.get(message_id)
        if message is None or message["deletedDateTime"] is not None:
            raise KeyError(message_id)
        return message

    def _next_id(self, now: datetime) -> str:
        # Teams message ids are the creation time in epoch milliseconds; kept unique here.
        self._last_id = max(int(now.timestamp() * 1000), self._last_id + 1)
        return str(self._last_id)

    def _changed(self, where: Conversation, change_type: str, message: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(where, change_type, dict(message))


CHANNEL_MESSAGES = re.compile(r"^/?teams/(?P<t>[^/]+)/channels/(?P<c>[^/]+)/messages/?$", re.IGNORECASE)
ALL_CHANNEL_MESSAGES = re.compile(r"^/?teams/getAllMessages/?$", re.IGNORECASE)
CHAT_MESSAGES = re.compile(r"^/?chats/getAllMessages/?$", re.IGNORECASE)


def _channel_exists(state: Any, resource: str) -> bool:
    m = CHANNEL_MESSAGES.match(resource.strip())
    return m is not None and state.teams.channel(m["t"], m["c"]) is not None


def _everywhere(state: Any, resource: str) -> bool:
    return True


RESOURCE_RULES.extend(
    ResourceRule(
        pattern,
        CHANGES,
        TEAMS_MAX_MINUTES,
        label,
        exists,
        resource_data=True,
        resource_data_required=required,
        lifecycle_required_after=LIFECYCLE_REQUIRED_AFTER,
    )
    for pattern, label, exists, required in (
        (CHANNEL_MESSAGES, "Teams channel messages", _channel_exists, False),
        (ALL_CHANNEL_MESSAGES, "Teams messages of all channels", _everywhere, True),
        (CHAT_MESSAGES, "Teams chat messages", _everywhere, True),
    )
)
