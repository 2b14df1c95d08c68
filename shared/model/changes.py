"""The interface every resource kind implements, and the registry that picks one.

A source reads one page of changes at a time, so a run's memory never grows with
the size of the resource: the synchronizer stores each page's events and index
rows, saves the link it reached, and only then asks for the next page.

A source never writes anything. Whatever position it keeps besides its link (the
all-folder mail walk's per-folder deltaLinks, say) it returns as ``Page.state``,
and the synchronizer commits it with the cursor: after the page's events and index
rows are stored, before the link moves on. A source reads that state back through
the ``SourceState`` view it is handed. So a crash or a failed write at any step
repeats the page; it can never record a position past a change that was not stored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.errors import GraphRequestError, UnsupportedResourceError

# A state entry's name is part of a RowKey: no '/', '\\', '#', '?' or control characters.
STATE_NAME = re.compile(r"[A-Za-z0-9._:~-]{1,200}")


@dataclass(frozen=True)
class SourceChange:
    """One item as a delta page returned it; ``version`` is None when it was deleted.

    ``created_at`` and ``modified_at`` are the item's own timestamps, when it has
    them: a resync uses them to tell what changed since the last completed run.
    """

    item_id: str
    version: str | None
    item: dict[str, Any] | None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    # False for kinds with no modification time (users, groups): an enumeration cannot
    # tell whether an item new to the index changed since, so it indexes it silently,
    # unless ``created_at`` says it was created since.
    dated: bool = True
    # What only an incremental round reports, beside the version: a group's members@delta.
    # It makes a change news in a delta round; an enumeration, which lists it whole, never
    # compares it (else every group with members would look changed after a resync).
    detail: str = ""


@dataclass(frozen=True)
class StateWrite:
    """One entry of a source's own state to set (``value``) or remove (None) at the page's commit."""

    name: str
    value: str | None

    def __post_init__(self) -> None:
        if not STATE_NAME.fullmatch(self.name):
            raise ValueError(f"not a state entry name: {self.name!r}")


@dataclass(frozen=True)
class Page:
    """One page of a delta round.

    Exactly one of ``next_link`` (more pages follow) and ``delta_link`` (the round
    is over: the cursor for next time) is set. ``state`` is what the source wants
    remembered besides the link; it is committed with the link, never before the
    page's changes are stored.
    """

    container_id: str
    changes: list[SourceChange]
    next_link: str | None
    delta_link: str | None
    state: tuple[StateWrite, ...] = field(default=())


def delta_page(container_id: str, changes: list[SourceChange], body: Mapping[str, Any]) -> Page:
    """A Graph delta response's page: its ``@odata.nextLink``, or else its ``@odata.deltaLink``."""
    next_link = body.get("@odata.nextLink")
    delta_link = body.get("@odata.deltaLink")
    if isinstance(next_link, str) and next_link:
        return Page(container_id, changes, next_link, None)
    if isinstance(delta_link, str) and delta_link:
        return Page(container_id, changes, None, delta_link)
    raise GraphRequestError("delta page has neither a nextLink nor a deltaLink")


@dataclass(frozen=True)
class NotifiedChange:
    """A change a notification told with its resource data, as a delta page of this kind would report it.

    The container and version are the ones the kind's delta reports, so one change
    gets one event id whichever path (notification or delta pass) sees it first.
    """

    container_id: str
    change: SourceChange


class ReadByDelta:
    """For kinds whose notifications carry no resource data: every change is read by a delta pass."""

    def notified(
        self, resource: str, notification: Mapping[str, Any], data: Mapping[str, Any]
    ) -> NotifiedChange | None:
        """Nothing to take from a notification: the pass it requests reads the change."""
        return None


@dataclass(frozen=True)
class Traits:
    """What a kind declares about its delta, so the synchronizer never has to guess.

    ``silent_baseline``: the kind has no 'latest' token, so a new subscription's first
    round reads everything; that round only indexes and reports nothing.
    ``ignores_unknown_removals``: the delta lists items outside its scope as removed
    (calendarView outside its window); a removal of an item never reported is no news.
    ``notified_only``: changes arrive only inside notifications (resource data), and a
    pass reads nothing from Graph.
    """

    silent_baseline: bool = False
    ignores_unknown_removals: bool = False
    notified_only: bool = False


PLAIN = Traits()


class SourceState(Protocol):
    """A source's saved state for one resource, read-only; the synchronizer writes it."""

    async def get(self, name: str) -> str | None:
        """The entry's value, or None when it is not set."""
        ...

    async def after(self, prefix: str, name: str | None) -> tuple[str, str] | None:
        """The first entry whose name starts with ``prefix`` and sorts after ``name`` (any, when None)."""
        ...

    def names(self, prefix: str) -> AsyncIterator[str]:
        """Every entry name that starts with ``prefix``, in order."""
        ...


class NoState:
    """The state of a source that keeps none: every read finds nothing."""

    async def get(self, name: str) -> str | None:
        """Nothing is set."""
        return None

    async def after(self, prefix: str, name: str | None) -> tuple[str, str] | None:
        """There is no entry."""
        return None

    async def names(self, prefix: str) -> AsyncIterator[str]:
        """No names."""
        empty: tuple[str, ...] = ()
        for name in empty:
            yield name


NO_STATE = NoState()


class ChangeSource(Protocol):
    """Reads the changes of one kind of resource through delta queries, page by page.

    Every source declares its ``kind`` (the events' ``kind``) and its ``traits``. A
    source registered in the app passes the conformance kit (tests/conformance).
    """

    kind: str
    traits: Traits

    def handles(self, resource: str) -> bool:
        """True when this source can read ``resource``."""
        ...

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """The page at ``link`` (a nextLink or deltaLink), or the first page of a full enumeration.

        ``state`` holds what earlier pages returned in ``Page.state``, as committed.
        Raises ResyncRequiredError when the link is stale (410): the caller starts
        a full enumeration from the error's ``location``.
        """
        ...

    def notified(
        self, resource: str, notification: Mapping[str, Any], data: Mapping[str, Any]
    ) -> NotifiedChange | None:
        """The change a rich notification tells (``data``: its decrypted resource, or what a
        deletion names), or None when the notification names no item of this kind."""
        ...


class SourceRegistry:
    """Finds the source for a subscription's resource."""

    def __init__(self, sources: Sequence[ChangeSource]) -> None:
        self._sources = tuple(sources)

    def of(self, tenant: str) -> SourceRegistry:
        """The sources reading ``tenant``'s data: these, in a single-tenant deployment (see app/tenant_graphs.py)."""
        return self

    def for_resource(self, resource: str) -> ChangeSource:
        """The source that handles ``resource``; raise UnsupportedResourceError otherwise."""
        for source in self._sources:
            if source.handles(resource):
                return source
        raise UnsupportedResourceError(f"no change source reads {resource!r}")

    @property
    def sources(self) -> tuple[ChangeSource, ...]:
        """Every registered source, in the order they are asked."""
        return self._sources
