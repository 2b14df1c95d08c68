"""The change event's two forms: native (the JSON object events.py builds) and a CloudEvent 1.0.

A CloudEvent is a pure function of the native event, so every place can build it, and
every reader can take either form back to the native one: the CloudEvent's ``data`` *is*
the native event, unchanged. Attributes:

- ``id``: the event's stable id (the same as the native ``id``, so duplicates still drop by it);
- ``source``: the subscription's resource (the native ``resource``, e.g. ``drives/{id}/root``);
- ``type``: ``com.graphhooks.<kind>.<changeType>``, such as ``com.graphhooks.driveItem.created``
  or ``com.graphhooks.tenant.removed`` (see ``event_type``);
- ``subject``: the item's id; ``time``: ``observedAt``; ``datacontenttype``: application/json.

The cloudevents package (imported only when a CloudEvent is built, so the native path never
pays for it) validates the attributes and writes the JSON and HTTP forms.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from shared.clock import parse_time
from shared.model.notifications import MAX_MESSAGE_JSON_BYTES

if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent

NATIVE = "native"
CLOUDEVENTS = "cloudevents"
EVENT_FORMATS = (NATIVE, CLOUDEVENTS)
# HTTP content modes of the CloudEvents HTTP binding, as a webhook sink names them.
ContentMode = Literal["binary", "structured"]
BINARY: ContentMode = "binary"
STRUCTURED: ContentMode = "structured"
CONTENT_MODES: tuple[ContentMode, ...] = (BINARY, STRUCTURED)

TYPE_PREFIX = "com.graphhooks"
SPECVERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def event_type(kind: str, change_type: str) -> str:
    """The CloudEvent type of a change: ``com.graphhooks.<kind>.<changeType>``.

    ``kind`` and ``changeType`` are the native event's, as they are (Graph's type names keep
    their case): ``com.graphhooks.driveItem.created``, ``com.graphhooks.user.deleted``,
    ``com.graphhooks.tenant.removed``. A resync's events carry the same types (``data.resync``).
    """
    if not kind or not change_type:
        raise ValueError("an event type needs a kind and a changeType")
    return f"{TYPE_PREFIX}.{kind}.{change_type}"


def is_cloud_event(message: dict[str, Any]) -> bool:
    """True for a structured CloudEvent carrying a native event (a native event has no ``specversion``)."""
    return "specversion" in message and isinstance(message.get("data"), dict)


def native_event(message: dict[str, Any]) -> dict[str, Any]:
    """The native event a message holds, in either form (anything else comes back as it is)."""
    if is_cloud_event(message):
        data: dict[str, Any] = message["data"]
        return data
    return message


def cloud_attributes(event: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent attributes of a native event (``time`` as an aware datetime).

    ValueError when the event lacks what an attribute is made of.
    """
    missing = [key for key in ("id", "resource", "kind", "changeType", "itemId", "observedAt") if not event.get(key)]
    if missing:
        raise ValueError(f"not a change event: no {', '.join(missing)}")
    return {
        "specversion": SPECVERSION,
        "id": str(event["id"]),
        "source": str(event["resource"]),
        "type": event_type(str(event["kind"]), str(event["changeType"])),
        "subject": str(event["itemId"]),
        "time": parse_time(str(event["observedAt"])),
        "datacontenttype": DATA_CONTENT_TYPE,
    }


def cloud_event(event: dict[str, Any]) -> CloudEvent:
    """The native event as a CloudEvent of the cloudevents package; ValueError if it does not validate."""
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.v1.event import CloudEvent

    try:
        return CloudEvent(cloud_attributes(event), event)
    except BaseCloudEventException as exc:
        raise ValueError(f"not a valid CloudEvent: {exc}") from exc


def structured_json(event: dict[str, Any]) -> str:
    """The CloudEvent in structured JSON mode, as the cloudevents package writes it."""
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().write(cloud_event(event)).decode("utf-8")


def fit_structured(text: str, limit: int = MAX_MESSAGE_JSON_BYTES) -> str:
    """A queue message's native event JSON as a structured CloudEvent that fits ``limit`` bytes.

    When the envelope pushes it over, its data goes without its item (``itemOmitted``), as a
    native event too large for a message does. A message that already is a CloudEvent is kept.
    """
    event = json.loads(text)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    if is_cloud_event(event):
        return text
    wrapped = structured_json(event)
    if len(wrapped.encode("utf-8")) <= limit:
        return wrapped
    return structured_json(event | {"item": None, "itemOmitted": True})


def http_message(event: dict[str, Any], mode: ContentMode) -> tuple[dict[str, str], bytes]:
    """The CloudEvent as an HTTP request's headers and body, in binary or structured content mode.

    Binary: ``ce-*`` headers, ``content-type: application/json`` and the native event as the
    body. Structured: ``content-type: application/cloudevents+json`` and the whole CloudEvent.
    """
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event

    message = (to_binary_event if mode == BINARY else to_structured_event)(cloud_event(event))
    return dict(message.headers), message.body
