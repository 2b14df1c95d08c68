"""Notifications carrying ``encryptedContent`` become change events directly, with no Graph call.

The event's ``item`` is the decrypted resource; its id is stable: derived from the
resource's id and version (``@odata.etag``, else ``lastModifiedDateTime``), so
Graph's duplicates share an id. Resource data never reaches a log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from ..errors import DecryptionError
from ..events import ChangeEvent, event_id, fit_event
from .certificates import CertificateBook
from .decryption import decrypt_content

log = logging.getLogger(__name__)
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})


class EventSink(Protocol):
    """Where events go (the graph-changes queue)."""

    async def send(self, text: str) -> Any: ...


def kind_of(resource: dict[str, Any], notification: dict[str, Any]) -> str:
    """chatMessage, message, event...: from the resource's @odata.type (or the notification's resourceData)."""
    data = notification.get("resourceData")
    odata_type = resource.get("@odata.type") or (data.get("@odata.type") if isinstance(data, dict) else None)
    if isinstance(odata_type, str) and odata_type:
        name = odata_type.rsplit(".", 1)[-1]
        return name[:1].lower() + name[1:]
    return "resource"


def container_of(resource: dict[str, Any], subscribed: str, path: object = None) -> str:
    """The chat or channel a message belongs to; else the subscribed resource.

    ``path`` is the notification's ``resource`` (``teams('t')/channels('c')/messages('m')``
    or ``chats('c')/messages('m')``): a deletion carries no message, only that.
    """
    channel = resource.get("channelIdentity")
    if isinstance(channel, dict) and channel.get("channelId"):
        return f"{channel.get('teamId', '')}/{channel['channelId']}"
    for field in ("chatId", "parentFolderId"):
        if isinstance(resource.get(field), str) and resource[field]:
            return str(resource[field])
    named = _MESSAGE_PATH.match(path) if isinstance(path, str) else None
    if named is not None:
        return f"{named['team']}/{named['channel']}" if named["team"] else str(named["chat"])
    return subscribed


_MESSAGE_PATH = re.compile(
    r"^/?(?:teams\('(?P<team>[^']+)'\)/channels\('(?P<channel>[^']+)'\)|chats\('(?P<chat>[^']+)'\))/messages\('[^']+'\)",
    re.IGNORECASE,
)


def resolves(notification: dict[str, Any], subscribed: str) -> bool:
    """Whether the notification itself tells the change, so no delta run is needed (or possible).

    True with ``encryptedContent``; and for a deletion on a resource Graph serves only
    with resource data (Teams messages): Graph sends such a deletion without
    ``encryptedContent``, naming the message in ``resourceData`` alone, and no delta
    could find it afterwards.
    """
    if notification.get("lifecycleEvent"):
        return False
    if "encryptedContent" in notification:
        return True
    from ..sources.catalog import readable_kind

    kind = readable_kind(subscribed)
    return (
        notification.get("changeType") == "deleted"
        and _named_id(notification) is not None
        and kind is not None
        and kind.resource_data_required
    )


def _named_id(notification: dict[str, Any]) -> str | None:
    data = notification.get("resourceData")
    item_id = data.get("id") if isinstance(data, dict) else None
    return item_id if isinstance(item_id, str) and item_id else None


def version_of(resource: dict[str, Any]) -> str:
    """What changes with every change of the resource."""
    for field in ("@odata.etag", "lastModifiedDateTime", "changeKey", "deletedDateTime"):
        value = resource.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def to_event(
    notification: dict[str, Any], resource: dict[str, Any], subscription_id: str, subscribed: str, now: datetime
) -> ChangeEvent | None:
    """The change event of one decrypted notification, or None when it names no item."""
    change_type = notification.get("changeType")
    item_id = resource.get("id")
    if change_type not in CHANGE_TYPES or not isinstance(item_id, str) or not item_id:
        return None
    kind = kind_of(resource, notification)
    container = container_of(resource, subscribed, notification.get("resource"))
    return ChangeEvent(
        id=event_id(kind, container, item_id, str(change_type), version_of(resource)),
        subscription_id=subscription_id,
        resource=subscribed,
        kind=kind,
        change_type=str(change_type),
        item_id=item_id,
        container_id=container,
        item=None if change_type == "deleted" else resource,
        observed_at=now,
    )


class ResourceDataReader:
    """Decrypts rich notifications and sends their events."""

    def __init__(
        self,
        certificates: CertificateBook,
        changes: EventSink,
        clock: Callable[[], datetime],
        calendar_window_days: tuple[int, int] = (30, 365),
    ) -> None:
        self._certificates = certificates
        self._changes = changes
        self._clock = clock
        # CALENDAR_WINDOW_DAYS_PAST and _AHEAD: an event outside them is ignored, as delta would.
        self._window_days = calendar_window_days

    async def emit(self, subscription_id: str, subscribed: str, items: Sequence[dict[str, Any]]) -> int:
        """Send one event per notification that decrypts and passes its signature; return how many."""
        sent = 0
        for item in items:
            try:
                resource = self._resource(item)
            except DecryptionError as exc:
                # The reason only: never the data, the key or the signature.
                log.warning("subscription %s: notification dropped: %s", subscription_id, exc.reason)
                continue
            now = self._clock()
            event = to_event(item, resource, subscription_id, subscribed, now)
            if event is not None and event.kind == "event" and self._outside_window(resource, now):
                log.info(
                    "subscription %s: event %s is outside the calendar window: ignored", subscription_id, event.item_id
                )
                continue
            if event is None:
                log.warning("subscription %s: decrypted resource without id or changeType: dropped", subscription_id)
                continue
            await self._changes.send(fit_event(event))
            sent += 1
        return sent

    def _outside_window(self, resource: dict[str, Any], now: datetime) -> bool:
        from ..sources.outlook.links import outside_window, window_around

        return outside_window(resource, window_around(now, *self._window_days))

    def _resource(self, notification: dict[str, Any]) -> dict[str, Any]:
        """The decrypted resource; for a deletion without ``encryptedContent``, what ``resourceData`` names."""
        if "encryptedContent" not in notification and notification.get("changeType") == "deleted":
            item_id = _named_id(notification)
            if item_id is not None:
                return {"id": item_id}
        return decrypt_content(notification.get("encryptedContent"), self._certificates)
