"""The interface every resource kind implements, and the registry that picks one.

A source reads one page of changes at a time, so a run's memory never grows with
the size of the resource: the synchronizer stores each page's events and index
rows, saves the link it reached, and only then asks for the next page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import UnsupportedResourceError


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
    # tell whether an item new to the index changed since, so it indexes it silently.
    dated: bool = True


@dataclass(frozen=True)
class Page:
    """One page of a delta round.

    Exactly one of ``next_link`` (more pages follow) and ``delta_link`` (the round
    is over: the cursor for next time) is set.
    """

    container_id: str
    changes: list[SourceChange]
    next_link: str | None
    delta_link: str | None


class ChangeSource(Protocol):
    """Reads the changes of one kind of resource through delta queries, page by page."""

    kind: str

    def handles(self, resource: str) -> bool:
        """True when this source can read ``resource``."""
        ...

    async def page(self, resource: str, link: str | None) -> Page:
        """The page at ``link`` (a nextLink or deltaLink), or the first page of a full enumeration.

        Raises ResyncRequiredError when the link is stale (410): the caller starts
        a full enumeration from the error's ``location``.
        """
        ...


class SourceRegistry:
    """Finds the source for a subscription's resource."""

    def __init__(self, sources: Sequence[ChangeSource]) -> None:
        self._sources = tuple(sources)

    def for_resource(self, resource: str) -> ChangeSource:
        """The source that handles ``resource``; raise UnsupportedResourceError otherwise."""
        for source in self._sources:
            if source.handles(resource):
                return source
        raise UnsupportedResourceError(f"no change source reads {resource!r}")
