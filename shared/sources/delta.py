"""What the Graph delta sources share: the reads they make, and a driveItem or listItem as a change."""

from __future__ import annotations

from typing import Any, Protocol

from shared.clock import optional_time
from shared.model.changes import SourceChange


class GraphReader(Protocol):
    """The two Graph calls a delta source makes (GraphGateway has them)."""

    async def fetch_url(self, url: str) -> dict[str, Any]: ...

    async def fetch_path(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]: ...


def item_change(item: Any, *version_fields: str) -> SourceChange | None:
    """A driveItem or listItem of a delta page as a change; its version is the first of ``version_fields`` set.

    A ``deleted`` facet or ``@removed`` marks a deletion; anything without an id is no change.
    """
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    if item.get("deleted") is not None or "@removed" in item:
        return SourceChange(item["id"], None, None)
    version = next((item[name] for name in version_fields if item.get(name)), "")
    return SourceChange(
        item["id"],
        str(version),
        item,
        created_at=optional_time(item.get("createdDateTime")),
        modified_at=optional_time(item.get("lastModifiedDateTime")),
    )
