"""The HTTP path: answer the handshake, check a batch, store it with one queue write.

Graph counts an answer slower than 3 s against the endpoint, so nothing here
calls Graph, and storage is touched little per request: the queue write, which
concurrent requests share (see group_commit.py), plus a point read of a subscription's
secret the first time an instance sees its id (cached, and refreshed in the
background every few minutes: see secrets.py). An item too large for a queue message adds a
blob write (see queues/claims.py).

A 2xx means every valid item is stored. An item whose subscription could not be
checked (its secret not read in time, or more new ids than one request reads) is
answered 503, so that Graph retries the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from shared import refusals, telemetry
from shared.clock import utcnow
from shared.errors import AuthorityUnavailableError, BodyTooLargeError, MalformedBodyError, StorageUnavailableError
from shared.ingest.group_commit import GroupCommit
from shared.ingest.secrets import SecretBook
from shared.model.notifications import MAX_BODY_BYTES, Envelope, Rejection, check_items, handshake_token, parse_batch
from shared.queues.message_queue import MessageQueue

if TYPE_CHECKING:
    from shared.security.tokens import TokenGate

log = logging.getLogger(__name__)
# Leaves room inside Graph's 3 s budget for the host and the network.
WRITE_DEADLINE_SECONDS = 2.0
# Every answer is text; nosniff keeps a browser from reading an echoed token as HTML.
SAFE_HEADERS: Mapping[str, str] = MappingProxyType({"X-Content-Type-Options": "nosniff"})


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, independent of any web framework."""

    status: int
    body: str = ""
    mimetype: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=lambda: SAFE_HEADERS)


def refuse_declared_size(headers: Mapping[str, str]) -> Reply | None:
    """413 when the Content-Length header announces more than MAX_BODY_BYTES, before any byte is read.

    ``headers`` is looked up case-insensitively (as azure.functions' and aiohttp's are). No
    header, or one that is not a number, is left to the check of the body itself.
    """
    declared = headers.get("content-length") or headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        return None
    if int(declared) > MAX_BODY_BYTES:
        return Reply(413, f"body exceeds {MAX_BODY_BYTES} bytes")
    return None


def answer_handshake(params: Mapping[str, str]) -> Reply | None:
    """Echo the URL-decoded validation token, or None if this is not a handshake."""
    token = handshake_token(params)
    if token is None:
        return None
    if not token:
        return Reply(400, "empty validationToken")
    return Reply(200, token, "text/plain")


def _body_reason(error: MalformedBodyError | BodyTooLargeError) -> refusals.Reason:
    return refusals.Reason.TOO_LARGE if isinstance(error, BodyTooLargeError) else refusals.Reason.MALFORMED


def _summary(rejected: list[Rejection], total: int) -> str:
    """Counts by reason: no subscription id, no clientState, nothing a sender chose."""
    counts = Counter(rejection.reason for rejection in rejected)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in counts.most_common())
    return f"dropped {len(rejected)} of {total} notifications ({reasons})"


class Ingest:
    """Accepts notification batches for one endpoint (notifications or lifecycle)."""

    def __init__(
        self,
        secrets: SecretBook,
        queue: MessageQueue,
        clock: Callable[[], datetime] = utcnow,
        tokens: TokenGate | None = None,
    ) -> None:
        self._secrets = secrets
        self._writer = GroupCommit(queue)
        self._clock = clock
        # Checks a rich batch's validation tokens before anything is stored.
        self._tokens = tokens

    async def accept(self, body: bytes, lifecycle: bool = False, channel: str = "") -> Reply:
        """Check a batch and store its valid items; 202 only once every valid item is stored.

        Logs at most one line per request for what was refused (why the body was, or how
        many items were dropped for which reasons, never a clientState), and one when the
        answer is 503. ``channel`` names another way in than the webhooks (``eventGrid``), for telemetry.
        """
        source = channel or ("lifecycle" if lifecycle else "notifications")
        # The trace starts here; the envelope carries it to the queue trigger.
        with telemetry.span(f"graphhooks.{source}", source=source) as current:
            reply = await self._accept(body, lifecycle, source)
            current.set_attribute("http.response.status_code", reply.status)
        return reply

    async def _accept(self, body: bytes, lifecycle: bool, source: str) -> Reply:
        received_at = self._clock()
        try:
            items = parse_batch(body)
        except (MalformedBodyError, BodyTooLargeError) as exc:
            log.warning("%s: refused a body of %d bytes with %d: %s", source, len(body), exc.status, exc)
            refusals.count(_body_reason(exc), source=source)  # one per body: its items were never read
            return Reply(exc.status, str(exc))
        telemetry.count(telemetry.RECEIVED, len(items), source=source)
        refused = await self._check_tokens(body, items, source)
        if refused is not None:
            return refused
        # In order of appearance, so the ids read first (see SecretBook) are the batch's first.
        ids = dict.fromkeys(sid for item in items if isinstance(sid := item.get("subscriptionId"), str) and sid)
        view = await self._secrets.view(ids)
        verdict = check_items(items, view.secret_of, lifecycle, view.unchecked, view.tenant_of)
        if verdict.rejected:
            # One line per request however many items: the fields go to App Insights as dimensions.
            fields = {"event": "notifications.rejected", "dropped": len(verdict.rejected), "total": len(items)}
            log.warning("%s: %s", source, _summary(verdict.rejected, len(items)), extra=fields)
            for reason, dropped in Counter(r.reason for r in verdict.rejected).items():
                refusals.count(refusals.reason_of(reason), dropped, source=source)
        # The checked items are stored even when others wait for a retry: they are processed now rather
        # than after Graph's back-off, and kept if Graph gives up. The retry stores them again (delivery
        # is at least once, and the queue trigger is idempotent).
        stored = await self._store(source, received_at, verdict.accepted) if verdict.accepted else Reply(202)
        if verdict.unchecked:
            log.error(
                "%s: %d of %d notifications not checked (%s): answering 503 so Graph retries",
                source,
                len(verdict.unchecked),
                len(items),
                view.why,
            )
            return Reply(503, "subscriptions not checked yet, retry later")
        return stored

    async def _store(self, source: str, received_at: datetime, accepted: list[dict[str, Any]]) -> Reply:
        """Store the accepted items with one queue write (and a blob each for items over 48 KiB)."""
        envelope = Envelope(source, received_at, accepted, traceparent=telemetry.current_traceparent())
        try:
            await asyncio.wait_for(self._writer.store(envelope), WRITE_DEADLINE_SECONDS)
        except (MalformedBodyError, BodyTooLargeError) as exc:
            # Only this request's items: the checks above make this rare (a nesting depth the encoder refuses).
            log.warning("%s: refused a batch with %d: %s", source, exc.status, exc)
            refusals.count(_body_reason(exc), len(accepted), source=source)
            return Reply(exc.status, str(exc))
        except (StorageUnavailableError, TimeoutError) as exc:
            log.error("%s: queue write failed (%s): answering 503 so Graph retries", source, type(exc).__name__)
            return Reply(503, "storage unavailable, retry later")
        telemetry.count(telemetry.ENQUEUED, len(accepted), source=source)
        return Reply(202)

    async def _check_tokens(self, body: bytes, items: list[dict[str, Any]], source: str) -> Reply | None:
        """None to go on; else the answer for a rich batch whose validation tokens fail.

        Graph's docs ask for 202 on an invalid token (the batch is not Graph's, or not for
        this app), with nothing stored; 503 when the authority's keys cannot be had.
        """
        from shared.security.tokens import batch_tokens

        tokens = batch_tokens(body, items)
        if tokens is None:
            return None
        if self._tokens is None:
            log.warning("%s: dropped a batch of %d with validation tokens: no token checker", source, len(items))
            refusals.count(refusals.Reason.BAD_VALIDATION_TOKEN, len(items), source=source)
            return Reply(202)
        try:
            refusal = await self._tokens.refusal(tokens, items)
        except AuthorityUnavailableError as exc:
            log.error("%s: %s: answering 503 so Graph retries", source, exc)
            return Reply(503, "token keys unavailable, retry later")
        if refusal is not None:
            # The reason only, never the token.
            log.warning("%s: dropped a batch of %d: validation token rejected (%s)", source, len(items), refusal)
            refusals.count(refusals.Reason.BAD_VALIDATION_TOKEN, len(items), source=source)
            return Reply(202)
        return None
