"""The clientStates the HTTP path checks items against: read once per id, cached, refreshed in the background.

A point read of a subscription's secret happens the first time an instance sees its
id; the answer is cached and re-read every few minutes. Reads one request may cause
are bounded, so forged ids cannot force unbounded reads: an id not read in time is
unchecked, and the request carrying it is answered 503 so Graph retries it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from shared.model.subscription import SubscriptionSecret

log = logging.getLogger(__name__)
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
        find: Callable[[str], Awaitable[str | SubscriptionSecret | None]],
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
        # Multi-tenant deployments only: each id's tenant (interned: one string per tenant, not per id).
        self._tenants: dict[str, str] = {}
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
        return SecretView(self._secrets.get, frozenset(unchecked), why, self._tenants.get)

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
            found = await self._find(subscription_id)
        except Exception:
            if subscription_id in self._secrets:
                self._failed_at[subscription_id] = self._clock()
                log.warning("subscription secret refresh failed: serving the cached one")
            raise
        self._failed_at.pop(subscription_id, None)
        secret, tenant = (found.client_state, found.tenant) if isinstance(found, SubscriptionSecret) else (found, "")
        if tenant:
            self._tenants[subscription_id] = sys.intern(tenant)
        if secret is None:
            self._secrets.pop(subscription_id, None)  # deleted since it was cached
            self._tenants.pop(subscription_id, None)
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
            self._tenants.pop(sid, None)
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
    # An id's tenant in a multi-tenant deployment ('' or None in a single-tenant one).
    tenant_of: Callable[[str], str | None] = lambda _sid: None


def _retrieve(task: asyncio.Task[None]) -> None:
    # A background task's error is raised to whoever waits for it; none may go unseen.
    if not task.cancelled():
        task.exception()


def _failure(task: asyncio.Task[None]) -> str:
    """The name of what ended a failed read (never its message, which may quote storage's answer)."""
    return "cancelled" if task.cancelled() else type(task.exception()).__name__
