"""Notification batches: the handshake, parsing, clientState checks and the queue envelope.

Everything here is pure: bytes and mappings in, decisions out, no I/O.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import format_time, parse_time
from .errors import BodyTooLargeError, MalformedBodyError

MAX_BODY_BYTES = 1024 * 1024
# A queue message holds 64 KiB once base64-encoded, so 48 KiB of JSON.
MAX_MESSAGE_JSON_BYTES = (64 * 1024 // 4) * 3
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
# Fields that are secret or useless once checked: never stored in the queue.
_DROPPED_FIELDS = ("clientState",)


def handshake_token(params: Mapping[str, str]) -> str | None:
    """Return the validation token if this request is a handshake (Graph or SharePoint)."""
    for key, value in params.items():
        if key.lower() == "validationtoken":
            return value
    return None


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """Parse a notification batch body into its items, or raise with a short reason."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"body exceeds {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise MalformedBodyError("empty body")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedBodyError("body is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise MalformedBodyError("body is not a notification batch: no 'value' list")
    items: list[dict[str, Any]] = document["value"]
    if not items:
        raise MalformedBodyError("notification batch is empty")
    if not all(isinstance(item, dict) for item in items):
        raise MalformedBodyError("notification batch holds a non-object item")
    return items


@dataclass(frozen=True)
class Rejection:
    """Why one item was dropped; carries no secret."""

    index: int
    subscription_id: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The items to store and the ones dropped, with their reasons."""

    accepted: list[dict[str, Any]]
    rejected: list[Rejection]


def check_items(
    items: Iterable[dict[str, Any]],
    secret_of: Callable[[str], str | None],
    lifecycle: bool,
) -> Verdict:
    """Keep the items whose clientState matches their subscription's secret.

    ``secret_of`` maps a subscription id to its clientState, or None when unknown.
    The comparison is constant-time, so a caller learns nothing from timing.
    """
    accepted: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        subscription_id = item.get("subscriptionId")
        if not isinstance(subscription_id, str) or not subscription_id:
            rejected.append(Rejection(index, "", "no subscriptionId"))
            continue
        reason = _shape_problem(item, lifecycle)
        if reason:
            rejected.append(Rejection(index, subscription_id, reason))
            continue
        expected = secret_of(subscription_id)
        if expected is None:
            rejected.append(Rejection(index, subscription_id, "unknown subscription"))
            continue
        given = item.get("clientState")
        # surrogatepass: a lone surrogate from JSON must mismatch, not raise.
        encoded = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else b""
        if not isinstance(given, str) or not hmac.compare_digest(encoded, expected.encode("utf-8")):
            rejected.append(Rejection(index, subscription_id, "clientState mismatch"))
            continue
        accepted.append({k: v for k, v in item.items() if k not in _DROPPED_FIELDS})
    return Verdict(accepted, rejected)


def _shape_problem(item: Mapping[str, Any], lifecycle: bool) -> str | None:
    event = item.get("lifecycleEvent")
    if lifecycle or event is not None:
        if event not in LIFECYCLE_EVENTS:
            return "unknown lifecycleEvent"
        return None
    if not isinstance(item.get("changeType"), str):
        return "no changeType"
    return None


@dataclass(frozen=True)
class Envelope:
    """What one queue message carries: checked items and when they were received."""

    source: str
    received_at: datetime
    items: list[dict[str, Any]]
    deferrals: int = 0

    def to_json(self) -> str:
        """Serialise compactly for the queue."""
        return json.dumps(
            {
                "v": 1,
                "source": self.source,
                "receivedAt": format_time(self.received_at),
                "deferrals": self.deferrals,
                "value": self.items,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        """Parse a queue message written by ``to_json``; raise MalformedBodyError otherwise."""
        try:
            raw = json.loads(text)
            items = raw["value"]
            received_at = parse_time(raw["receivedAt"])
            deferrals = int(raw.get("deferrals", 0))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise MalformedBodyError("queue message is not a notification envelope") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MalformedBodyError("queue message holds no notification list")
        return cls(str(raw.get("source", "")), received_at, items, deferrals)


def split_envelope(envelope: Envelope, limit: int = MAX_MESSAGE_JSON_BYTES) -> list[str]:
    """Split an envelope into queue-message texts that each fit ``limit`` UTF-8 bytes."""
    whole = envelope.to_json()
    if len(whole.encode("utf-8")) <= limit:
        return [whole]
    overhead = len(_with_items(envelope, []).encode("utf-8"))
    messages: list[str] = []
    chunk: list[dict[str, Any]] = []
    size = overhead
    for item in envelope.items:
        # Measuring each item once keeps the split linear; a comma joins it to the one before.
        item_size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
        if overhead + item_size > limit:
            raise BodyTooLargeError("one notification exceeds the queue message limit")
        if chunk and size + 1 + item_size > limit:
            messages.append(_with_items(envelope, chunk))
            chunk, size = [], overhead
        size += item_size + (1 if chunk else 0)
        chunk.append(item)
    messages.append(_with_items(envelope, chunk))
    return messages


def _with_items(envelope: Envelope, items: list[dict[str, Any]]) -> str:
    return Envelope(envelope.source, envelope.received_at, items, envelope.deferrals).to_json()
