"""The timer trigger: NCRONTAB (seconds first) or TimeSpan schedules, in UTC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest
from croniter import croniter

from devtools.host.invoker import Invoker
from devtools.host.loader import FunctionSpec
from devtools.host.settings import HostConfigError, parse_timespan, resolve_setting_refs

log = logging.getLogger("devtools.host")

# A scheduled run that starts this much after its time is reported as past due.
PAST_DUE_AFTER = timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """A timer schedule: a cron expression (5 or 6 fields) or a constant interval."""

    expression: str
    interval: timedelta | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (UTC)."""
        if self.interval is not None:
            return moment + self.interval
        fields = self.expression.split()
        it = croniter(self.expression, moment, second_at_beginning=len(fields) == 6)
        nxt: datetime = it.get_next(datetime)
        return nxt


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule after `%SETTING%` substitution."""
    expr = resolve_setting_refs(text).strip()
    if re.fullmatch(r"(\d+\.)?\d{1,2}:\d{1,2}(:\d{1,2}(\.\d+)?)?", expr):
        interval = parse_timespan(expr)
        if interval <= timedelta(0):
            raise HostConfigError(f"timer interval must be positive: {expr!r}")
        return Schedule(expr, interval)
    fields = expr.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=len(fields) == 6):
        raise HostConfigError(f"invalid timer schedule {expr!r} (six-field NCRONTAB, seconds first, or a TimeSpan)")
    return Schedule(expr)


def _now() -> datetime:
    return datetime.now(UTC)


class TimerListener:
    """Fires a timer function on its schedule; one run at a time, never retried."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker) -> None:
        self.spec = spec
        self.schedule = parse_schedule(str(spec.trigger.get("schedule", "")))
        self._run_on_startup = bool(spec.trigger.get("runOnStartup", False))
        self._invoker = invoker
        self._stopping = asyncio.Event()
        self._last: datetime | None = None

    def stop(self) -> None:
        """Stop scheduling; a run in progress finishes."""
        self._stopping.set()

    def next_occurrences(self, count: int = 5) -> list[datetime]:
        """The next few occurrences, for the start-up listing."""
        out: list[datetime] = []
        moment = _now()
        for _ in range(count):
            moment = self.schedule.next_after(moment)
            out.append(moment)
        return out

    async def run(self) -> None:
        """Run until stopped."""
        if self._run_on_startup and not self._stopping.is_set():
            await self._fire(past_due=False, reason="Timer fired at startup (RunOnStartup)")
        base = _now()
        while not self._stopping.is_set():
            due = self.schedule.next_after(base)
            if not await self._sleep_until(due):
                return
            late = _now() - due
            await self._fire(past_due=late > PAST_DUE_AFTER, reason=f"Timer fired at {_now().isoformat()}")
            # As the host does: the next occurrence is counted from when this run ended,
            # so a run longer than the period skips ticks instead of overlapping.
            base = max(_now(), due)

    async def _sleep_until(self, due: datetime) -> bool:
        while not self._stopping.is_set():
            remaining = (due - _now()).total_seconds()
            if remaining <= 0:
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=min(remaining, 3600))
        return False

    async def _fire(self, past_due: bool, reason: str) -> None:
        now = _now()
        status = {
            "Last": (self._last or datetime.min.replace(tzinfo=UTC)).isoformat(),
            "Next": self.schedule.next_after(now).isoformat(),
            "LastUpdated": now.isoformat(),
        }
        self._last = now
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
        # Failures are logged by the invoker and not retried.
        await self._invoker.invoke(self.spec, request, reason)
