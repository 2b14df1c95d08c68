"""SharePoint list items read by listItem delta (``sites/{site-id}/lists/{list-id}``).

Follows listitem-delta: page through @odata.nextLink to @odata.deltaLink, the
last occurrence of an item wins, deleted items carry a ``deleted`` facet, and a
stale token answers 410 with a Location that starts a fresh enumeration, as for
drives. ``$expand=fields`` makes each item carry its column values; Graph keeps
the query options in the links it returns.
"""

from __future__ import annotations

from typing import Any

from shared.errors import GraphRequestError
from shared.model.catalog import SHAREPOINT_LIST
from shared.model.changes import NO_STATE, PLAIN, Page, ReadByDelta, SourceState, delta_page
from shared.sources.delta import GraphReader, item_change

# The list item's columns come with it; without them a consumer would need a second call per item.
FIRST_PAGE_QUERY = {"$expand": "fields"}


class ListSource(ReadByDelta):
    """The ChangeSource for SharePoint lists: events of kind ``listItem`` whose item carries ``fields``."""

    kind = "listItem"
    traits = PLAIN

    def __init__(self, graph: GraphReader) -> None:
        self._graph = graph

    def handles(self, resource: str) -> bool:
        """sites/{site-id}/lists/{list-id}."""
        return SHAREPOINT_LIST.match(resource.strip("/")) is not None

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One delta page: at ``link``, or the first page of a full enumeration."""
        match = SHAREPOINT_LIST.match(resource.strip("/"))
        if match is None:
            raise GraphRequestError(f"not a SharePoint list: {resource!r}")
        if link:
            body = await self._graph.fetch_url(link)
        else:
            path = f"sites/{match['site']}/lists/{match['list']}/items/delta"
            body = await self._graph.fetch_path(path, FIRST_PAGE_QUERY)
        return to_page(match["list"], body)


def to_page(list_id: str, body: dict[str, Any]) -> Page:
    """A listItem delta response as a Page whose container is the list."""
    changes = [
        change
        for item in body.get("value") or []
        if (change := item_change(item, "eTag", "lastModifiedDateTime")) is not None
    ]
    return delta_page(list_id, changes, body)
