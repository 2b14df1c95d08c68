"""A run's lease on a delta cursor, kept alive through every slow step.

The lease is a time in the cursor row, written with the ETag read, so exactly
one run holds it. While the run works, a heartbeat extends it in the background:
a queue send or an index write that takes longer than expected does not let the
lease lapse, so no second run starts on the same resource. Every write goes
through one lock, because each write changes the ETag the next one needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from shared.errors import CursorConflictError
from shared.model.cursor import CursorState, StoredCursor
from shared.stores.cursors import CursorStore

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)


class Lease:
    """A held lease on one cursor: save progress, extend, release."""

    def __init__(
        self,
        cursors: CursorStore,
        held: StoredCursor,
        clock: Callable[[], datetime],
        duration: timedelta = LEASE,
    ) -> None:
        self._cursors = cursors
        self._held = held
        self._clock = clock
        self._duration = duration
        self._lock = asyncio.Lock()
        self.lost = False

    @classmethod
    async def acquire(
        cls, cursors: CursorStore, cursor: StoredCursor, clock: Callable[[], datetime], duration: timedelta = LEASE
    ) -> Lease:
        """Take the lease with a conditional write; CursorConflictError if another run moved first."""
        held = await cursors.write(cursor, replace(cursor.state, lease_until=clock() + duration))
        return cls(cursors, held, clock, duration)

    @property
    def state(self) -> CursorState:
        """The cursor as last written by this run."""
        return self._held.state

    @property
    def written_at(self) -> datetime | None:
        """Storage's time of this run's last write."""
        return self._held.written_at

    async def save(self, state: CursorState, release: bool = False) -> None:
        """Write progress (extending the lease, or releasing it); CursorConflictError if the lease was lost."""
        lease_until = None if release else self._clock() + self._duration
        async with self._lock:
            try:
                self._held = await self._cursors.write(self._held, replace(state, lease_until=lease_until))
            except CursorConflictError:
                self.lost = True
                raise

    async def extend(self) -> None:
        """Push the lease's end out, keeping the latest saved progress (read under the lock)."""
        async with self._lock:
            try:
                self._held = await self._cursors.write(
                    self._held, replace(self._held.state, lease_until=self._clock() + self._duration)
                )
            except CursorConflictError:
                self.lost = True
                raise

    async def release(self) -> None:
        """Give the lease up without other changes; best effort, since it also expires on its own."""
        if self.lost:
            return
        try:
            async with self._lock:
                self._held = await self._cursors.write(self._held, replace(self._held.state, lease_until=None))
        except Exception:  # noqa: BLE001 - the lease expires anyway
            log.warning("could not release the lease on %s", self._held.key)

    @contextlib.asynccontextmanager
    async def kept_alive(self) -> AsyncIterator[Lease]:
        """Extend the lease in the background while the body runs."""
        beat = asyncio.create_task(self._beat())
        try:
            yield self
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _beat(self) -> None:
        interval = self._duration.total_seconds() / 4
        while not self.lost:
            await asyncio.sleep(interval)
            try:
                await self.extend()
            except CursorConflictError:
                log.warning("lease on %s was lost: this run stops at its next step", self._held.key)
                return
            except Exception as exc:  # noqa: BLE001 - a failed beat is retried at the next interval
                log.warning("could not extend the lease on %s: %s", self._held.key, type(exc).__name__)
