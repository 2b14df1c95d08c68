"""Failures injected after each I/O step of a pass: a raised storage error, or the worker killed.

The wrappers sit where the synchronizer meets storage and Graph, so every kind is
failed at the same steps:
- ``read``: after the Graph read (a delta page, or a notification's resource read);
- ``state``: after the source's own state is written (the all-folder walk's deltaLinks);
- ``events``: after the page's events are sent;
- ``index``: after the page's index rows are written;
- ``cursor``: before the cursor's progress is saved.
A killed worker does nothing more: every later call of its raises ``Killed``, so it
releases no lease and cleans nothing up, as after kill -9.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from typing import Any

from shared.errors import StorageUnavailableError
from shared.model.changes import NO_STATE, Page, SourceState

STEPS = ("read", "state", "events", "index", "cursor")
RAISED, KILLED = "raised", "killed"


class Killed(BaseException):
    """The worker's process died at this point."""


class Faults:
    """One failure, at the first time ``step`` is reached."""

    def __init__(self, step: str, mode: str) -> None:
        assert step in STEPS and mode in (RAISED, KILLED)
        self.step, self.mode = step, mode
        self.fired = self.dead = False

    def alive(self) -> None:
        if self.dead:
            raise Killed(f"the worker died after {self.step}")

    def reached(self, step: str) -> None:
        self.alive()
        if step != self.step or self.fired:
            return
        self.fired = True
        if self.mode == KILLED:
            self.dead = True
            raise Killed(f"the worker was killed after {step}")
        raise StorageUnavailableError(f"injected failure after {step}")


class _Source:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults
        self.kind, self.traits = inner.kind, inner.traits

    def handles(self, resource: str) -> bool:
        return bool(self._inner.handles(resource))

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        self._faults.alive()
        page: Page = await self._inner.page(resource, link, state)
        if page.changes:
            self._faults.reached("read")
        return page

    def notified(self, resource: str, notification: Mapping[str, Any], data: Mapping[str, Any]) -> Any:
        self._faults.alive()
        told = self._inner.notified(resource, notification, data)
        if told is not None:
            self._faults.reached("read")
        return told


class _Sources:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults

    def of(self, tenant: str) -> _Sources:
        return _Sources(self._inner.of(tenant), self._faults)

    def for_resource(self, resource: str) -> Any:
        return _Source(self._inner.for_resource(resource), self._faults)


class _Outlet:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults

    async def send_all(self, texts: Iterable[str]) -> None:
        self._faults.alive()
        texts = list(texts)
        await self._inner.send_all(texts)
        if texts:
            self._faults.reached("events")

    async def send(self, text: str, **options: Any) -> None:
        self._faults.alive()
        await self._inner.send(text, **options)


class _Index:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults

    async def known(self, key: str, item_ids: Iterable[str]) -> Any:
        self._faults.alive()
        return await self._inner.known(key, item_ids)

    async def apply(self, key: str, writes: Iterable[Any]) -> None:
        self._faults.alive()
        writes = list(writes)
        await self._inner.apply(key, writes)
        if writes:
            self._faults.reached("index")

    async def unmarked(self, key: str, pass_id: str) -> AsyncIterator[Any]:
        self._faults.alive()
        async for rows in self._inner.unmarked(key, pass_id):
            self._faults.alive()
            yield rows

    async def purge(self, key: str, item_ids: Any) -> None:
        self._faults.alive()
        await self._inner.purge(key, item_ids)

    async def forget(self, key: str) -> None:
        self._faults.alive()
        await self._inner.forget(key)


class _SourceState:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults

    def view(self, key: str) -> SourceState:
        self._faults.alive()
        view: SourceState = self._inner.view(key)
        return view

    async def apply(self, key: str, writes: Iterable[Any]) -> None:
        self._faults.alive()
        writes = list(writes)
        await self._inner.apply(key, writes)
        if writes:
            self._faults.reached("state")

    async def forget(self, key: str) -> None:
        self._faults.alive()
        await self._inner.forget(key)


class _Cursors:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner, self._faults = inner, faults

    async def load(self, key: str) -> Any:
        self._faults.alive()
        return await self._inner.load(key)

    async def write(self, cursor: Any, state: Any) -> Any:
        self._faults.alive()
        if replace(cursor.state, lease_until=None) != replace(state, lease_until=None):
            self._faults.reached("cursor")  # progress, not a lease
        return await self._inner.write(cursor, state)

    async def start(self, key: str, state: Any) -> bool:
        self._faults.alive()
        return bool(await self._inner.start(key, state))

    async def delete(self, key: str) -> None:
        self._faults.alive()
        await self._inner.delete(key)


def install(worker: Any, faults: Faults) -> None:
    """Route the worker's synchronizer through the fault points."""
    sync = worker.processor._sync
    sync._sources = _Sources(sync._sources, faults)
    sync._changes = _Outlet(sync._changes, faults)
    sync._index = _Index(sync._index, faults)
    sync._source_state = _SourceState(sync._source_state, faults)
    sync._cursors = _Cursors(sync._cursors, faults)


def uninstall(worker: Any) -> None:
    """Take the fault points out again."""
    sync = worker.processor._sync
    for name in ("_sources", "_changes", "_index", "_source_state", "_cursors"):
        part = getattr(sync, name)
        if isinstance(part, (_Sources, _Outlet, _Index, _SourceState, _Cursors)):
            setattr(sync, name, part._inner)
