"""Notification batches: the handshake, parsing, clientState checks and the queue envelope.

Everything here is pure: bytes and mappings in, decisions out, no I/O.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.clock import format_time, parse_time
from shared.errors import BodyTooLargeError, MalformedBodyError

MAX_BODY_BYTES = 1024 * 1024
# Graph sends at most a few hundred notifications per POST; a bound keeps each request's
# work small, whatever the sender packs into 1 MiB (some 349,000 empty objects fit).
MAX_ITEMS_PER_BATCH = 1000
# A queue message holds 64 KiB once base64-encoded, so 48 KiB of JSON.
MAX_MESSAGE_JSON_BYTES = (64 * 1024 // 4) * 3
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
# OneDrive's documented notifications carry no changeType (onedrive-api-docs, docs/rest-api/concepts/
# using-webhooks.md), nor do SharePoint's list webhooks: drives and lists allow only "updated", so that is
# what a change notification without one means.
IMPLIED_CHANGE_TYPE = "updated"
# Fields that are secret or useless once checked: never stored in the queue.
_DROPPED_FIELDS = ("clientState",)


def handshake_token(params: Mapping[str, str]) -> str | None:
    """Return the validation token if this request is a handshake (Graph or SharePoint)."""
    for key, value in params.items():
        if key.lower() == "validationtoken":
            return value
    return None


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """Parse a notification batch body into its items, or raise with a short reason.

    A body over MAX_BODY_BYTES, or a batch of more than MAX_ITEMS_PER_BATCH items, raises
    BodyTooLargeError (413 Content Too Large: more content than this endpoint processes in
    one request). Graph never sends either; the sender should send less, and a 400 would
    wrongly say the content itself is malformed. Anything else that is not a batch of
    objects in strict JSON raises MalformedBodyError (400).
    """
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"body exceeds {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise MalformedBodyError("empty body")
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedBodyError("body is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise MalformedBodyError("body is not a notification batch: no 'value' list")
    items: list[dict[str, Any]] = document["value"]
    if not items:
        raise MalformedBodyError("notification batch is empty")
    if len(items) > MAX_ITEMS_PER_BATCH:
        raise BodyTooLargeError(f"batch of {len(items)} notifications exceeds {MAX_ITEMS_PER_BATCH}")
    if not all(isinstance(item, dict) for item in items):
        raise MalformedBodyError("notification batch holds a non-object item")
    return items


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259), although Python's parser accepts them.
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Rejection:
    """Why one item was dropped; carries no secret."""

    index: int
    subscription_id: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The items to store, the ones dropped with their reasons, and those not checked (retry them)."""

    accepted: list[dict[str, Any]]
    rejected: list[Rejection]
    unchecked: list[Rejection] = field(default_factory=list)


def check_items(
    items: Iterable[dict[str, Any]],
    secret_of: Callable[[str], str | None],
    lifecycle: bool,
    unchecked: Container[str] = frozenset(),
    tenant_of: Callable[[str], str | None] = lambda _sid: None,
) -> Verdict:
    """Keep the items whose clientState matches their subscription's secret.

    In a multi-tenant deployment ``tenant_of`` gives a subscription's tenant: an item is
    kept only if its ``tenantId`` names that tenant, so a notification cannot be passed
    off as another tenant's. In a single-tenant one it gives None, and nothing is compared.

    ``secret_of`` maps a subscription id to its clientState, or None when unknown; an
    item whose subscription id is in ``unchecked`` (its secret could not be read in
    time) is neither kept nor rejected: it is listed in ``Verdict.unchecked``, for the
    caller to answer 5xx so that Graph retries it. The comparison is constant-time, so
    a caller learns nothing from timing. An item is kept only if it can be written to a
    queue message, so one bad item never fails a write that carries others (see
    ingest/group_commit.py): one holding text that is not Unicode, or a number that is not finite
    (``1e999`` parses to infinity), is rejected alone. A change notification without
    ``changeType`` is kept as ``updated`` (see IMPLIED_CHANGE_TYPE).
    """
    accepted: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    waiting: list[Rejection] = []
    for index, item in enumerate(items):
        subscription_id = item.get("subscriptionId")
        if not isinstance(subscription_id, str) or not subscription_id:
            rejected.append(Rejection(index, "", "no subscriptionId"))
            continue
        reason = _shape_problem(item, lifecycle)
        if reason:
            rejected.append(Rejection(index, subscription_id, reason))
            continue
        if subscription_id in unchecked:
            waiting.append(Rejection(index, subscription_id, "subscription not checked"))
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
        tenant = tenant_of(subscription_id)
        if tenant and not _same_tenant(item.get("tenantId"), tenant):
            rejected.append(Rejection(index, subscription_id, "tenant mismatch"))
            continue
        kept = {k: v for k, v in item.items() if k not in _DROPPED_FIELDS}
        if "changeType" not in kept and "lifecycleEvent" not in kept:
            kept["changeType"] = IMPLIED_CHANGE_TYPE
        try:
            encode_item(kept)
        except MalformedBodyError as exc:
            rejected.append(Rejection(index, subscription_id, str(exc)))
            continue
        accepted.append(kept)
    return Verdict(accepted, rejected, waiting)


def _same_tenant(given: object, tenant: str) -> bool:
    # Tenant ids are GUIDs, written in any case by senders; the subscription's is canonical (lower case).
    return isinstance(given, str) and given.strip().lower() == tenant


def _shape_problem(item: Mapping[str, Any], lifecycle: bool) -> str | None:
    event = item.get("lifecycleEvent")
    if lifecycle or event is not None:
        # A list or an object is unhashable: test the type before looking it up in the set.
        if not isinstance(event, str) or event not in LIFECYCLE_EVENTS:
            return "unknown lifecycleEvent"
        return None
    # Absent means IMPLIED_CHANGE_TYPE; present, it must be text.
    if "changeType" in item and not isinstance(item["changeType"], str):
        return "no changeType"
    return None


def encode_item(item: Mapping[str, Any]) -> bytes:
    """The item's compact UTF-8 JSON, as a queue message carries it.

    Raise MalformedBodyError when it has none: text with a lone surrogate (valid as a
    JSON escape, "\\ud800", but not in UTF-8), a number that is not finite (``1e999``
    parses to infinity, which JSON cannot write), or nesting deeper than the encoder goes.
    """
    try:
        return json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedBodyError("text not valid Unicode") from exc
    except RecursionError as exc:
        raise MalformedBodyError("not storable as JSON") from exc
    except ValueError as exc:
        # allow_nan=False: the only ValueError an item parsed from JSON can raise here.
        raise MalformedBodyError("number out of range") from exc


class ClaimedItem(dict[str, Any]):
    """An item read back from a blob (see queues/claims.py), remembering the claim that stood for it.

    An envelope written again (a deferral, a copy to poison) carries the claim, not the
    item, so it still fits a queue message.
    """

    def __init__(self, item: Mapping[str, Any], claim: Mapping[str, Any]) -> None:
        super().__init__(item)
        self.claim = dict(claim)


def stored_form(item: dict[str, Any]) -> dict[str, Any]:
    """What a queue message carries for ``item``: its claim if it came from a blob, else itself."""
    return item.claim if isinstance(item, ClaimedItem) else item


@dataclass(frozen=True)
class Envelope:
    """What one queue message carries: checked items and when they were received."""

    source: str
    received_at: datetime
    items: list[dict[str, Any]]
    deferrals: int = 0
    # The W3C traceparent of the span that stored it, so one trace spans the queue hop; set only when tracing.
    traceparent: str | None = None
    # Storage's insertion time of the message the items were first stored in; set on a deferred copy,
    # whose own insertion time is later, so a pass that began after the first one still covers them.
    notified_at: datetime | None = None

    def to_json(self) -> str:
        """Serialise compactly for the queue ("value" last: pack_items appends items there)."""
        fields: dict[str, Any] = {
            "v": 1,
            "source": self.source,
            "receivedAt": format_time(self.received_at),
            "deferrals": self.deferrals,
        }
        if self.notified_at is not None:
            fields["notifiedAt"] = format_time(self.notified_at)
        if self.traceparent:
            fields["traceparent"] = self.traceparent
        fields["value"] = [stored_form(item) for item in self.items]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        """Parse a queue message written by ``to_json``; raise MalformedBodyError otherwise."""
        try:
            raw = json.loads(text)
            items = raw["value"]
            received_at = parse_time(raw["receivedAt"])
            deferrals = int(raw.get("deferrals", 0))
            notified_at = parse_time(raw["notifiedAt"]) if "notifiedAt" in raw else None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise MalformedBodyError("queue message is not a notification envelope") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MalformedBodyError("queue message holds no notification list")
        traceparent = raw.get("traceparent")
        traceparent = traceparent if isinstance(traceparent, str) and len(traceparent) <= 128 else None
        return cls(str(raw.get("source", "")), received_at, items, deferrals, traceparent, notified_at)


def item_room(envelope: Envelope, limit: int = MAX_MESSAGE_JSON_BYTES) -> int:
    """The most UTF-8 bytes one encoded item may take in a message with ``envelope``'s fields."""
    return limit - len(_with_items(envelope, []).encode("utf-8"))


def pack_items(envelope: Envelope, encoded: Sequence[bytes], limit: int = MAX_MESSAGE_JSON_BYTES) -> list[str]:
    """Queue-message texts of at most ``limit`` UTF-8 bytes carrying ``encoded`` items in order.

    ``encoded`` are items as ``encode_item`` gives them; the envelope supplies the other
    fields (its own items are ignored). The text equals ``Envelope.to_json`` of each part.
    """
    empty = _with_items(envelope, []).encode("utf-8")
    head, tail = empty[: -len(b"]}")], b"]}"  # the items go inside the trailing "value":[]
    overhead = len(empty)
    messages: list[str] = []
    chunk: list[bytes] = []
    size = overhead
    for item in encoded:
        # A comma joins each item to the one before.
        if overhead + len(item) > limit:
            raise BodyTooLargeError("one notification exceeds the queue message limit")
        if chunk and size + 1 + len(item) > limit:
            messages.append((head + b",".join(chunk) + tail).decode("utf-8"))
            chunk, size = [], overhead
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    messages.append((head + b",".join(chunk) + tail).decode("utf-8"))
    return messages


def _with_items(envelope: Envelope, items: list[dict[str, Any]]) -> str:
    return Envelope(envelope.source, envelope.received_at, items, envelope.deferrals, envelope.traceparent).to_json()
