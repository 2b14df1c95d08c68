"""Injected faults on Graph endpoints (counted faults and timed storms) and the subscription-write throttle.

Each tenant has its own injector and throttle (tenants.py): Graph throttles per app per tenant.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import GraphError

_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "ResourceNotFound",
    409: "Conflict",
    410: "Gone",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceNotAvailable",
    504: "GatewayTimeout",
}
_MESSAGES = {
    429: "Too many requests.",
    503: "Service unavailable.",
    504: "Gateway timeout.",
    500: "Internal server error.",
}


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``method`` and ``path`` with ``status``."""

    path: re.Pattern[str]
    status: int
    count: int
    method: str | None = None
    retry_after: int | None = None
    hits: int = 0

    def as_json(self) -> dict[str, object]:
        """For the control API."""
        return {
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "remaining": self.count,
            "hits": self.hits,
            "retryAfter": self.retry_after,
        }


@dataclass
class Storm:
    """Answer every Graph request with ``status`` and ``Retry-After: retry_after`` until ``until`` (simulator time)."""

    until: datetime
    status: int
    retry_after: int
    hits: int = 0

    def as_json(self, now: datetime) -> dict[str, object]:
        """For the control API."""
        return {
            "status": self.status,
            "retryAfter": self.retry_after,
            "until": self.until.isoformat(),
            "remainingSeconds": max(0.0, (self.until - now).total_seconds()),
            "hits": self.hits,
        }


def storm_error(status: int, retry_after: int) -> GraphError:
    """The throttling answer of Graph's throttling page: code TooManyRequests, an innerError with code and status."""
    if status == 429:
        code, message, inner = "TooManyRequests", "Please retry again later.", "429"
    else:
        code, message, inner = _CODES.get(status, "UnknownError"), _MESSAGES.get(status, "Service unavailable."), None
    extra = {"message": "Please retry after", "status": str(status)} if inner else None
    return GraphError(status, code, message, {"Retry-After": str(retry_after)}, inner_code=inner, inner_extra=extra)


class FaultInjector:
    """Faults are consumed in the order they were added; a storm answers everything until it ends."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.injected = 0
        self.storm: Storm | None = None

    def start_storm(self, now: datetime, seconds: float, status: int, retry_after: int) -> Storm:
        """Throttle every request for ``seconds`` of simulator time (0 ends a storm)."""
        self.storm = Storm(now + timedelta(seconds=seconds), status, retry_after) if seconds > 0 else None
        return self.storm or Storm(now, status, retry_after)

    def check_storm(self, now: datetime) -> None:
        """Raise the storm's error while it lasts."""
        storm = self.storm
        if storm is None:
            return
        if now >= storm.until:
            self.storm = None
            return
        storm.hits += 1
        self.injected += 1
        raise storm_error(storm.status, storm.retry_after)

    def add(
        self, path: str, status: int, count: int = 1, method: str | None = None, retry_after: int | None = None
    ) -> Fault:
        """Register a fault (``path`` is a regex searched in the path after ``/v1.0``)."""
        fault = Fault(
            path=re.compile(path),
            status=status,
            count=count,
            method=method.upper() if method else None,
            retry_after=retry_after,
        )
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove all faults and the storm."""
        self.faults.clear()
        self.storm = None

    def check(self, method: str, path: str) -> None:
        """Raise the matching fault's error, if any is left."""
        self.faults = [f for f in self.faults if f.count > 0]
        for fault in self.faults:
            if fault.count <= 0 or (fault.method and fault.method != method.upper()):
                continue
            if not fault.path.search(path):
                continue
            fault.count -= 1
            fault.hits += 1
            self.injected += 1
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            elif fault.status == 429:
                headers["Retry-After"] = "1"
            raise GraphError(
                fault.status,
                _CODES.get(fault.status, "UnknownError"),
                _MESSAGES.get(fault.status, "Injected fault."),
                headers,
            )


class WriteThrottle:
    """Sliding-window limit on subscription writes per tenant (Graph: 500 per 20 s)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()
        self.throttled = 0

    def hit(self) -> None:
        """Count one write, or raise 429 with Retry-After when over the limit."""
        now = time.monotonic()
        while self._stamps and now - self._stamps[0] >= self.window:
            self._stamps.popleft()
        if len(self._stamps) >= self.limit:
            self.throttled += 1
            wait = max(1, math.ceil(self.window - (now - self._stamps[0])))
            raise GraphError(
                429, "TooManyRequests", "Too many requests. The request has been throttled.", {"Retry-After": str(wait)}
            )
        self._stamps.append(now)

    def reset(self) -> None:
        """Forget recorded writes."""
        self._stamps.clear()
