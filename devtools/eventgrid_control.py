"""Steer the simulator's Event Grid side from tests and tools: partner topics, activation, dead letters, retries.

Wraps a :class:`devtools.simclient.SimControl` (its session and base URL)::

    async with SimControl(control_url) as ctl:
        grid = EventGridControl(ctl)
        await grid.activate(notification_url, host_url + "/runtime/webhooks/eventgrid?functionName=eventgrid")
"""

from __future__ import annotations

from typing import Any

from devtools.simclient import SimControl


class EventGridControl:
    """The ``/_sim/eventgrid/...`` control routes."""

    def __init__(self, control: SimControl) -> None:
        self._control = control

    async def topics(self) -> list[dict[str, Any]]:
        """The partner topics Graph created: id, name, activationState, destination and counters."""
        return list((await self._control.call("GET", "/eventgrid/topics"))["value"])

    async def activate(self, url: str, destination: str | None = None) -> dict[str, Any]:
        """Activate the topic an ``EventGrid:`` URL names and send its events to ``destination``."""
        body: dict[str, Any] = {"url": url}
        if destination is not None:
            body["destination"] = destination
        return dict(await self._control.call("POST", "/eventgrid/topics/activate", body))

    async def deactivate(self, url: str) -> dict[str, Any]:
        """Deactivate the topic: later events are dropped."""
        return dict(await self._control.call("POST", "/eventgrid/topics/deactivate", {"url": url}))

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Dead-lettered events with deadletterreason, deliveryattempts, lastdeliveryoutcome."""
        return list((await self._control.call("GET", "/eventgrid/deadletters"))["value"])

    async def clear_dead_letters(self) -> None:
        """Forget the dead letters."""
        await self._control.call("DELETE", "/eventgrid/deadletters")

    async def retry(self, **policy: Any) -> dict[str, Any]:
        """Set the retry policy (``scale``, ``schedule``, ``maxAttempts``, ``ttlSeconds``); returns it."""
        return dict(await self._control.call("POST", "/eventgrid/retry", policy))
