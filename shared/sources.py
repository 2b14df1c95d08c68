"""The interface every resource kind implements, and the registry that picks one.

Add a resource kind (mail, lists, SharePoint REST) as one module that implements
ChangeSource; nothing else needs a new branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import UnsupportedResourceError

KeepAlive = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SourceChange:
    """One item as a delta query returned it; ``version`` is None when it was deleted."""

    item_id: str
    version: str | None
    item: dict[str, Any] | None


@dataclass(frozen=True)
class Delta:
    """All changes since a cursor, and the cursor to use next time.

    ``complete`` marks a full enumeration (first sync or resync): every live item
    is listed, so a known item that is missing from it was deleted meanwhile.
    """

    container_id: str
    changes: list[SourceChange]
    delta_link: str
    complete: bool


class ChangeSource(Protocol):
    """Reads the changes of one kind of resource through delta queries."""

    kind: str

    def handles(self, resource: str) -> bool:
        """True when this source can read ``resource``."""
        ...

    async def latest(self, resource: str) -> str:
        """A cursor for 'now': later reads return only later changes."""
        ...

    async def read(self, resource: str, delta_link: str | None, keep_alive: KeepAlive | None = None) -> Delta:
        """Every change after ``delta_link`` (or every item, when it is None).

        ``keep_alive`` is awaited between pages, so a long run can extend its lease.
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
