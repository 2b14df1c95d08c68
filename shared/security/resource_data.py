"""Rich notifications: the resource each one carries, decrypted, or why it could not be read.

A notification with ``encryptedContent`` tells its change itself: no delta run is
needed. Reading it here only decrypts and checks; committing the change (against
the item index, so it gets the same event id as a delta pass would give it) is the
synchronizer's job (``Synchronizer.apply_notified``). A notification that cannot be
decrypted is handed back as such, never dropped: the processor keeps it in the
poison queue, from which an operator replays it once the certificate is fixed.
Resource data never reaches a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import DecryptionError
from shared.security.certificates import CertificateBook
from shared.security.decryption import decrypt_content

log = logging.getLogger(__name__)


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
    from shared.model.catalog import readable_kind

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


@dataclass
class Reading:
    """What a batch of rich notifications held.

    ``told``: each readable notification with its resource (decrypted, or what a
    deletion names); ``undecryptable``: the notifications that could not be read;
    ``outside_window``: calendar events outside the window, ignored as delta ignores them.
    """

    told: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    undecryptable: list[dict[str, Any]] = field(default_factory=list)
    outside_window: int = 0


class ResourceDataReader:
    """Decrypts rich notifications and checks what they carry."""

    def __init__(
        self,
        certificates: CertificateBook,
        clock: Callable[[], datetime],
        calendar_window_days: tuple[int, int] = (30, 365),
    ) -> None:
        self._certificates = certificates
        self._clock = clock
        # CALENDAR_WINDOW_DAYS_PAST and _AHEAD: an event outside them is ignored, as delta would.
        self._window_days = calendar_window_days

    def read(self, subscription_id: str, items: Sequence[dict[str, Any]]) -> Reading:
        """The resources ``items`` carry, and the ones that could not be read."""
        reading = Reading()
        for item in items:
            try:
                resource = self._resource(item)
            except DecryptionError as exc:
                # The reason only: never the data, the key or the signature.
                log.warning("subscription %s: notification not decrypted: %s", subscription_id, exc.reason)
                reading.undecryptable.append(item)
                continue
            if _is_calendar_event(resource, item) and self._outside_window(resource):
                log.info("subscription %s: an event outside the calendar window: ignored", subscription_id)
                reading.outside_window += 1
                continue
            reading.told.append((item, resource))
        return reading

    def _outside_window(self, resource: dict[str, Any]) -> bool:
        from shared.sources.outlook.links import outside_window, window_around

        return outside_window(resource, window_around(self._clock(), *self._window_days))

    def _resource(self, notification: dict[str, Any]) -> dict[str, Any]:
        """The decrypted resource; for a deletion without ``encryptedContent``, what ``resourceData`` names."""
        if "encryptedContent" not in notification and notification.get("changeType") == "deleted":
            item_id = _named_id(notification)
            if item_id is not None:
                return {"id": item_id}
        return decrypt_content(notification.get("encryptedContent"), self._certificates)


def _is_calendar_event(resource: dict[str, Any], notification: dict[str, Any]) -> bool:
    data = notification.get("resourceData")
    odata_type = resource.get("@odata.type") or (data.get("@odata.type") if isinstance(data, dict) else None)
    return isinstance(odata_type, str) and odata_type.rsplit(".", 1)[-1].lower() == "event"
