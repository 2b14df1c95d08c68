"""GET /api/health: is the app able to do its work, and how far behind is it?

``assess`` is the pure decision (a Snapshot and ``now`` in, a status and a JSON body
out). ``HealthProbe`` gathers a Snapshot with its clients passed in, and
``HealthMonitor`` caches it, so however often a load balancer probes, storage and
Graph see at most one round of checks per ``ttl``. Nothing secret is ever in a
Snapshot: no clientState, connection string or token, only counts, times and names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import format_time, utcnow
from shared.logs import log_event
from shared.refusals import Reason, Totals

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient

log = logging.getLogger(__name__)
# One slow check must not hold a probe longer than a load balancer waits.
CHECK_TIMEOUT_SECONDS = 5.0
# Refusals that mean a broken certificate or consent rather than noise: any in the last hour is a warning.
ALARMING = (Reason.BAD_VALIDATION_TOKEN, Reason.DECRYPTION_FAILED)


@dataclass(frozen=True)
class Snapshot:
    """The result of one round of checks; an error is a short cause (an exception's type), never a message."""

    checked_at: datetime
    storage_error: str | None = None
    token_error: str | None = None
    # Each stored subscription's expiry (None: not created yet); None when storage could not be read.
    expiries: tuple[datetime | None, ...] | None = None
    queue_depths: Mapping[str, int] = field(default_factory=dict)
    oldest_sync: datetime | None = None
    # Every instance's refusals by reason (None: not read); why they could not be read.
    refusals: Totals | None = None
    refusals_error: str | None = None
    # TENANT_MODE=multi: the tenants by status and the suspended ones (None: single mode, or not read).
    tenants: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    """What the route answers."""

    status: int
    body: dict[str, Any]


def assess(snapshot: Snapshot, now: datetime, poison_queue: str = "graph-notifications-poison") -> Verdict:
    """200 when storage and Graph answer and no subscription is past its expiry; else 503 with the reasons.

    A message in the poison queue needs a look but stops nothing: it is a warning, and so
    is an ALARMING refusal in the last hour.
    """
    reasons: list[str] = []
    warnings: list[str] = []
    if snapshot.storage_error:
        reasons.append(f"storage unreachable ({snapshot.storage_error})")
    if snapshot.token_error:
        reasons.append(f"no Graph token ({snapshot.token_error})")
    subscriptions: dict[str, Any] | None = None
    if snapshot.expiries is not None:
        known = [e for e in snapshot.expiries if e is not None]
        past_due = sum(1 for e in known if e <= now)
        if past_due:
            reasons.append(f"{past_due} subscription(s) past their expiry")
        subscriptions = {
            "count": len(snapshot.expiries),
            "earliestExpiry": format_time(min(known)) if known else None,
            "pastDue": past_due,
        }
    poisoned = snapshot.queue_depths.get(poison_queue, 0)
    if poisoned:
        warnings.append(f"{poisoned} message(s) in {poison_queue}")
    refusals = snapshot.refusals
    if refusals is not None:
        warnings += [
            f"{n} item(s) refused in the last hour: {r.value}" for r in ALARMING if (n := refusals.last_hour.get(r))
        ]
    elif snapshot.refusals_error:
        warnings.append(f"refusal counts unavailable ({snapshot.refusals_error})")
    tenants = snapshot.tenants
    if tenants is not None and tenants.get("suspended"):
        # One customer's revoked consent is theirs to fix: a warning, never a reason to take the app out.
        warnings.append(f"{len(tenants['suspended'])} tenant(s) suspended: their token is refused")
    oldest = snapshot.oldest_sync
    body: dict[str, Any] = {
        "status": "unhealthy" if reasons else "healthy",
        "reasons": reasons,
        "warnings": warnings,
        "checkedAt": format_time(snapshot.checked_at),
        "storage": {"reachable": snapshot.storage_error is None},
        "graph": {"token": snapshot.token_error is None},
        "subscriptions": subscriptions,
        "queues": dict(snapshot.queue_depths),
        "oldestSync": format_time(oldest) if oldest else None,
        "oldestSyncAgeSeconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "refusals": refusals.as_json() if refusals is not None else None,
    } | ({"tenants": dict(tenants)} if tenants is not None else {})
    return Verdict(503 if reasons else 200, body)


class HealthProbe:
    """Gathers a Snapshot: storage (the queues and tables read below), a Graph token, subscriptions, queue depths.

    ``token`` gets a Graph access token (azure-identity caches it until it nears expiry);
    ``expiries`` lists the stored subscriptions' expiries; ``cursors`` is the delta
    cursor table; ``queues`` the queues whose depth is reported; ``refusals`` sums the
    refusals table (a failure there is a warning, not a reason: nothing stops working).
    """

    def __init__(
        self,
        token: Callable[[], Awaitable[Any]],
        expiries: Callable[[], Awaitable[Sequence[datetime | None]]],
        cursors: TableClient,
        queues: Sequence[QueueClient],
        clock: Callable[[], datetime] = utcnow,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        refusals: Callable[[], Awaitable[Totals]] | None = None,
        tenants: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self._refusals = refusals
        self._tenants = tenants
        self._token = token
        self._expiries = expiries
        self._cursors = cursors
        self._queues = queues
        self._clock = clock
        self._timeout = timeout

    async def snapshot(self) -> Snapshot:
        """Run every check at once; each failure is recorded by its cause, none raises."""
        checked_at = self._clock()
        token, expiries, oldest, refusals, tenants, *depths = await asyncio.gather(
            self._bounded(self._token()),
            self._bounded(self._expiries()),
            self._bounded(oldest_sync(self._cursors)),
            self._bounded(self._refusals() if self._refusals is not None else _nothing()),
            self._bounded(self._tenants() if self._tenants is not None else _nothing()),
            *(self._bounded(queue_depth(q)) for q in self._queues),
            return_exceptions=True,
        )
        storage_errors = [r for r in (expiries, oldest, tenants, *depths) if isinstance(r, BaseException)]
        return Snapshot(
            checked_at=checked_at,
            storage_error=_cause(storage_errors[0]) if storage_errors else None,
            token_error=_cause(token) if isinstance(token, BaseException) else None,
            expiries=None if isinstance(expiries, BaseException) else tuple(expiries),
            queue_depths={
                q.queue_name: d for q, d in zip(self._queues, depths, strict=True) if not isinstance(d, BaseException)
            },
            oldest_sync=None if isinstance(oldest, BaseException) else oldest,
            refusals=None if isinstance(refusals, BaseException) else refusals,
            refusals_error=_cause(refusals) if isinstance(refusals, BaseException) else None,
            tenants=None if isinstance(tenants, BaseException) else tenants,
        )

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(call, self._timeout)


async def _nothing() -> None:
    return None


def _cause(error: BaseException) -> str:
    # The type only: a message can quote a URL with a SAS token or a response body.
    return "timeout" if isinstance(error, TimeoutError) else type(error).__name__


async def queue_depth(client: QueueClient) -> int:
    """The queue's approximate message count; a queue not created yet holds none."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        properties = await client.get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(properties.approximate_message_count or 0)


async def oldest_sync(cursors: TableClient) -> datetime | None:
    """The start of the least recent completed delta pass among all cursors (None: none completed)."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.stores.cursors import PARTITION

    oldest: datetime | None = None
    try:
        async for entity in cursors.query_entities(f"PartitionKey eq '{PARTITION}'", select=["SyncedFrom"]):
            synced = entity.get("SyncedFrom")
            # The epoch stands for "never" in the table (see stores/cursors.py).
            if isinstance(synced, datetime) and synced.year > 1970 and (oldest is None or synced < oldest):
                oldest = synced
    except ResourceNotFoundError:
        return None
    return oldest


class HealthMonitor:
    """Serves one cached Snapshot for ``ttl`` seconds; concurrent probes share one refresh."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[Snapshot]],
        ttl: float,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl = ttl
        self._on_snapshot = on_snapshot
        self._monotonic = monotonic
        self._cached: tuple[float, Snapshot] | None = None
        self._refreshing: asyncio.Task[Snapshot] | None = None

    async def snapshot(self) -> Snapshot:
        """The cached Snapshot, or a fresh one when it is older than ``ttl``."""
        if self._cached is not None and self._monotonic() - self._cached[0] < self._ttl:
            return self._cached[1]
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
        # Shielded: a probe that gives up must not cancel the refresh others wait for.
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> Snapshot:
        started = self._monotonic()
        snapshot = await self._probe()
        self._cached = (started, snapshot)
        log_event(
            log,
            "health.checked",
            storage_ok=snapshot.storage_error is None,
            token_ok=snapshot.token_error is None,
            subscriptions=len(snapshot.expiries) if snapshot.expiries is not None else None,
            duration_ms=round((self._monotonic() - started) * 1000, 1),
        )
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)
        return snapshot

    async def check(self, now: datetime | None = None) -> Verdict:
        """The route's answer, from the cached Snapshot."""
        return assess(await self.snapshot(), now or utcnow())
