"""The HTTP path: answer the handshake, check a batch, store it with one queue write.

Graph counts an answer slower than 3 s against the endpoint, so nothing here
calls Graph, and storage is touched little per request: the queue write, which
concurrent requests share (see writer.py), plus a point read of a subscription's
secret the first time an instance sees its id (cached, and refreshed in the
background every few minutes). An item too large for a queue message adds a
blob write (see claims.py).

A 2xx means every valid item is stored. An item whose subscription could not be
checked (its secret not read in time, or more new ids than one request reads) is
answered 503, so that Graph retries the batch.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from shared import refusals, telemetry
from shared.clock import utcnow
from shared.errors import AuthorityUnavailableError, BodyTooLargeError, MalformedBodyError, StorageUnavailableError
from shared.ingest.group_commit import GroupCommit
from shared.model.notifications import MAX_BODY_BYTES, Envelope, Rejection, check_items, handshake_token, parse_batch
from shared.queues.message_queue import MessageQueue

if TYPE_CHECKING:
    from shared.security.tokens import TokenGate

log = logging.getLogger(__name__)
# Leaves room inside Graph's 3 s budget for the host and the network.
WRITE_DEADLINE_SECONDS = 2.0
SECRETS_DEADLINE_SECONDS = 0.8
# Point reads one request may cause, so forged ids cannot force unbounded reads. Ids beyond are not
# checked: the request is answered 503 and Graph's retry reads the next ones (the first are cached by then).
# A subscription set brings 25 new ids in one batch routinely: they are read in one request.
MAX_FINDS_PER_REQUEST = 50
# An id storage said it does not hold is read again after ``miss_interval``, when a request has reads to
# spare; for this long, one with none to spare counts it unknown on that answer rather than unchecked, so a
# batch naming many gone subscriptions is settled in a few retries instead of being answered 503 forever.
ABSENT_MEMORY_SECONDS = 3600.0
# Graph's subscription ids are GUIDs: an id of other characters, or longer, cannot be one and is never read.
_READABLE_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
# Ids storage said it does not hold, remembered for ABSENT_MEMORY_SECONDS: beyond this many, the expired ones go.
_ABSENT_LIMIT = 10_000
# A cached clientState is re-read in the background once this old (a deleted subscription's is dropped).
DEFAULT_SECRET_TTL_SECONDS = 300.0
# Ids cached at most (about 200 bytes each): beyond, the oldest half is forgotten and read again when named.
CACHED_SECRETS_LIMIT = 200_000
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


class SecretBook:
    """Subscription id → clientState, read by id from the subscriptions table and cached.

    Nothing is loaded whole: the first request naming an id reads that row (a point read),
    so a cold start costs a few reads, never a scan that grows with the subscriptions
    stored, and no reload of thousands of rows ever competes with requests. A cached id
    older than ``ttl`` is still served while one background read refreshes it (or drops
    it when its subscription is gone); no request that gives up cancels a read, so a slow
    table cannot turn into a run of 503s.

    An id whose read fails, or does not end within the deadline, is reported unchecked by
    ``view`` (the caller answers 503); it is never taken for unknown. The reads are bounded:
    at most ``max_finds`` ids are read per request (the others are unchecked too), an id
    storage says it does not hold is not read again for ``miss_interval`` (see
    ABSENT_MEMORY_SECONDS), and beyond ``limit`` ids the oldest are forgotten.
    """

    def __init__(
        self,
        find: Callable[[str], Awaitable[str | None]],
        ttl: float = DEFAULT_SECRET_TTL_SECONDS,
        miss_interval: float = 1.0,
        max_finds: int = MAX_FINDS_PER_REQUEST,
        deadline: float = SECRETS_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        limit: int = CACHED_SECRETS_LIMIT,
        absent_memory: float = ABSENT_MEMORY_SECONDS,
    ) -> None:
        self._find = find
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._absent_memory = absent_memory
        self._max_finds = max_finds
        self._deadline = deadline
        self._clock = clock
        self._limit = limit
        self._secrets: dict[str, str] = {}
        self._read_at: dict[str, float] = {}  # id -> when its cached value was read; oldest first
        self._failed_at: dict[str, float] = {}  # id -> when its last background refresh failed
        self._absent: dict[str, float] = {}  # id -> when storage said it holds no such id
        self._finding: dict[str, asyncio.Task[None]] = {}

    async def view(self, subscription_ids: Iterable[str]) -> SecretView:
        """What this request may know of ``subscription_ids``: each one's secret, or that it is unchecked.

        Waits at most the deadline; a read still running then goes on in the background,
        and a later request gets its answer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        reads, stale, unchecked = self._plan(subscription_ids)
        for sid in stale:
            self._start_find(sid)  # not awaited: this request gets the value it has
        why = f"more than {self._max_finds} new subscription ids" if unchecked else None
        if reads:
            tasks = {sid: self._start_find(sid) for sid in reads}
            done, _ = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time()))
            for sid, task in tasks.items():
                if task not in done:
                    unchecked.append(sid)
                    why = why or "subscription secrets not read in time"
                elif task.cancelled() or task.exception() is not None:
                    unchecked.append(sid)
                    why = why or f"subscription secrets unavailable ({_failure(task)})"
        return SecretView(self._secrets.get, frozenset(unchecked), why)

    async def settle(self) -> None:
        """Wait for the point reads in flight (their errors are not raised)."""
        tasks = list(self._finding.values())
        if tasks:
            await asyncio.wait(tasks)

    def _plan(self, subscription_ids: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
        """The ids to read before answering, the cached ones to refresh in the background, and those left unchecked.

        Ids never read (or long forgotten) come first, in order of appearance; ids known to be
        absent are read again with the reads to spare. An id that cannot be a subscription id
        is never read: it is unknown.
        """
        now = self._clock()
        new: list[str] = []
        recheck: list[str] = []
        stale: list[str] = []
        for sid in dict.fromkeys(subscription_ids):
            read_at = self._read_at.get(sid)
            if read_at is not None:
                failed_at = self._failed_at.get(sid)
                # After a failed refresh, the next try waits ``miss_interval``: the cached value serves meanwhile.
                retry_ok = failed_at is None or now - failed_at >= self._miss_interval
                if now - read_at >= self._ttl and retry_ok:
                    stale.append(sid)
                continue
            if not _READABLE_ID.fullmatch(sid):
                continue
            absent_since = self._absent.get(sid)
            if absent_since is None or now - absent_since >= self._absent_memory:
                new.append(sid)
            elif now - absent_since >= self._miss_interval:
                recheck.append(sid)
        reads = new[: self._max_finds]
        reads += recheck[: self._max_finds - len(reads)]
        return reads, stale, new[self._max_finds :]

    def _start_find(self, subscription_id: str) -> asyncio.Task[None]:
        task = self._finding.get(subscription_id)
        if task is None:
            # One read per id however many requests name it meanwhile.
            task = asyncio.create_task(self._find_one(subscription_id))
            self._finding[subscription_id] = task
            task.add_done_callback(functools.partial(self._found_one, subscription_id))
        return task

    async def _find_one(self, subscription_id: str) -> None:
        started = self._clock()
        try:
            secret = await self._find(subscription_id)
        except Exception:
            if subscription_id in self._secrets:
                self._failed_at[subscription_id] = self._clock()
                log.warning("subscription secret refresh failed: serving the cached one")
            raise
        self._failed_at.pop(subscription_id, None)
        if secret is None:
            self._secrets.pop(subscription_id, None)  # deleted since it was cached
            self._read_at.pop(subscription_id, None)
            self._absent.pop(subscription_id, None)  # re-inserted last: the dict stays in time order
            self._absent[subscription_id] = self._clock()
            if len(self._absent) > _ABSENT_LIMIT:
                self._forget_old_absences()
            return
        self._secrets[subscription_id] = secret
        self._read_at.pop(subscription_id, None)  # re-inserted last: the dict stays in time order
        self._read_at[subscription_id] = started
        if len(self._read_at) > self._limit:
            self._forget_oldest()

    def _found_one(self, subscription_id: str, task: asyncio.Task[None]) -> None:
        self._finding.pop(subscription_id, None)
        _retrieve(task)

    def _forget_oldest(self) -> None:
        # Forgetting costs a point read each on the next use; keeping them all would grow without bound.
        for sid in list(itertools.islice(self._read_at, len(self._read_at) - self._limit // 2)):
            self._read_at.pop(sid, None)
            self._secrets.pop(sid, None)
            self._failed_at.pop(sid, None)

    def _forget_old_absences(self) -> None:
        now = self._clock()
        self._absent = {sid: at for sid, at in self._absent.items() if now - at < self._absent_memory}
        if len(self._absent) > _ABSENT_LIMIT // 2:
            # A flood of forged ids: forgetting them all costs at most a read each, bounded per request,
            # where rescanning on every miss would cost a scan of the whole map.
            self._absent.clear()


@dataclass(frozen=True)
class SecretView:
    """What one request knows of its subscriptions.

    ``secret_of`` gives an id's clientState, or None when storage does not hold it;
    ``unchecked`` are the ids it could not ask storage about (``why`` says why).
    """

    secret_of: Callable[[str], str | None]
    unchecked: frozenset[str] = frozenset()
    why: str | None = None


def _retrieve(task: asyncio.Task[None]) -> None:
    # A background task's error is raised to whoever waits for it; none may go unseen.
    if not task.cancelled():
        task.exception()


def _failure(task: asyncio.Task[None]) -> str:
    """The name of what ended a failed read (never its message, which may quote storage's answer)."""
    return "cancelled" if task.cancelled() else type(task.exception()).__name__


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

    async def accept(self, body: bytes, lifecycle: bool = False) -> Reply:
        """Check a batch and store its valid items; 202 only once every valid item is stored.

        Logs at most one line per request for what was refused (why the body was, or how
        many items were dropped for which reasons, never a clientState), and one when the
        answer is 503.
        """
        source = "lifecycle" if lifecycle else "notifications"
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
        verdict = check_items(items, view.secret_of, lifecycle, view.unchecked)
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
