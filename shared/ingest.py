"""The HTTP path: answer the handshake, check a batch, store it with one queue write.

Graph counts an answer slower than 3 s against the endpoint, so nothing here
calls Graph, and storage is touched at most once per request: the queue write,
which concurrent requests share (see writer.py), plus a cached read of the
subscription secrets, refreshed at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .clock import utcnow
from .errors import BodyTooLargeError, MalformedBodyError, StorageUnavailableError
from .notifications import MAX_MESSAGE_JSON_BYTES, Envelope, check_items, handshake_token, parse_batch, split_envelope
from .queues import MessageQueue
from .writer import GroupWriter

log = logging.getLogger(__name__)
# Leaves room inside Graph's 3 s budget for the host and the network.
WRITE_DEADLINE_SECONDS = 2.0
SECRETS_DEADLINE_SECONDS = 0.8
# An envelope's own fields, beyond the items: a generous bound.
ENVELOPE_OVERHEAD = 512


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, independent of any web framework."""

    status: int
    body: str = ""
    mimetype: str = "text/plain"


def answer_handshake(params: Mapping[str, str]) -> Reply | None:
    """Echo the URL-decoded validation token, or None if this is not a handshake."""
    token = handshake_token(params)
    if token is None:
        return None
    if not token:
        return Reply(400, "empty validationToken")
    return Reply(200, token, "text/plain")


class SecretBook:
    """Subscription id → clientState, cached from the subscriptions table.

    Refreshed when older than ``ttl`` and, for an id it does not know, at most
    once per ``miss_interval``: a subscription created a moment ago by another
    instance is found, and unknown ids cannot force a read per request.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[dict[str, str]]],
        ttl: float = 60.0,
        miss_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._clock = clock
        self._secrets: dict[str, str] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def view(self, subscription_ids: set[str]) -> Callable[[str], str | None]:
        """A lookup function that knows every id in ``subscription_ids`` that exists."""
        if self._needs_load(subscription_ids):
            async with self._lock:
                if self._needs_load(subscription_ids):  # a concurrent request may have loaded it
                    self._secrets = await self._load()
                    self._loaded_at = self._clock()
        return self._secrets.get

    def _needs_load(self, subscription_ids: set[str]) -> bool:
        if self._loaded_at is None:
            return True
        age = self._clock() - self._loaded_at
        return age >= self._ttl or (age >= self._miss_interval and bool(subscription_ids - self._secrets.keys()))


class Ingest:
    """Accepts notification batches for one endpoint (notifications or lifecycle)."""

    def __init__(
        self,
        secrets: SecretBook,
        queue: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._secrets = secrets
        self._writer = GroupWriter(queue)
        self._clock = clock

    async def accept(self, body: bytes, lifecycle: bool = False) -> Reply:
        """Check a batch and store its valid items; 202 only once they are stored."""
        received_at = self._clock()
        try:
            items = parse_batch(body)
        except (MalformedBodyError, BodyTooLargeError) as exc:
            return Reply(exc.status, str(exc))
        ids = {sid for item in items if isinstance(sid := item.get("subscriptionId"), str)}
        try:
            lookup = await asyncio.wait_for(self._secrets.view(ids), SECRETS_DEADLINE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - any storage failure means "try again later"
            log.error("subscription secrets unavailable (%s): answering 503", type(exc).__name__)
            return Reply(503, "storage unavailable, retry later")
        verdict = check_items(items, lookup, lifecycle)
        for rejection in verdict.rejected:
            log.warning(
                "dropped notification %d for subscription %r: %s",
                rejection.index,
                rejection.subscription_id,
                rejection.reason,
            )
        if not verdict.accepted:
            return Reply(202)
        envelope = Envelope("lifecycle" if lifecycle else "notifications", received_at, verdict.accepted)
        if len(body) + ENVELOPE_OVERHEAD > MAX_MESSAGE_JSON_BYTES:
            # Only a body this large can hold an item too large for any queue message.
            try:
                split_envelope(envelope)
            except BodyTooLargeError as exc:
                return Reply(exc.status, str(exc))
        try:
            await asyncio.wait_for(self._writer.store(envelope), WRITE_DEADLINE_SECONDS)
        except (StorageUnavailableError, TimeoutError) as exc:
            log.error("queue write failed (%s): answering 503 so Graph retries", type(exc).__name__)
            return Reply(503, "storage unavailable, retry later")
        return Reply(202)
