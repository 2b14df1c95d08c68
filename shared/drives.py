"""Drive items (OneDrive for work or school, SharePoint libraries) read by drive delta.

Follows driveitem-delta: page through @odata.nextLink to @odata.deltaLink; the
same item may appear more than once (the last one wins); deleted items carry a
``deleted`` facet; a stale token answers 410 and the drive must be enumerated
again from the Location given.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .errors import GraphRequestError, ResyncRequiredError
from .graph import GraphGateway
from .sources import Delta, KeepAlive, SourceChange

log = logging.getLogger(__name__)

_DRIVE_ROOT = re.compile(r"^(?:drives/(?P<drive>[^/]+)|(?P<owner>users|groups|sites)/(?P<owner_id>[^/]+)/drive)/root$")
# A broken server could otherwise page forever.
MAX_PAGES = 100_000


class DriveSource:
    """The ChangeSource for drive roots."""

    kind = "driveItem"

    def __init__(self, graph: GraphGateway) -> None:
        self._graph = graph
        self._drive_ids: dict[str, str] = {}

    def handles(self, resource: str) -> bool:
        """Drive roots: drives/{id}/root, users/{id}/drive/root, sites/{id}/drive/root."""
        return _DRIVE_ROOT.match(resource.strip("/")) is not None

    async def latest(self, resource: str) -> str:
        """The drive's current deltaLink (delta with token=latest returns no items)."""
        page = await self._graph.drive_delta(await self._drive_id(resource), token="latest")
        link = page.get("@odata.deltaLink")
        if not isinstance(link, str):
            raise GraphRequestError("delta with token=latest returned no deltaLink")
        return link

    async def read(self, resource: str, delta_link: str | None, keep_alive: KeepAlive | None = None) -> Delta:
        """Every change after ``delta_link``; on 410, the full enumeration instead."""
        drive_id = await self._drive_id(resource)
        try:
            return await self._pages(drive_id, delta_link, keep_alive)
        except ResyncRequiredError as stale:
            log.warning("delta cursor for %s is stale: enumerating the drive again", resource)
            return await self._pages(drive_id, None, keep_alive, restart_url=stale.location)

    async def _pages(
        self, drive_id: str, delta_link: str | None, keep_alive: KeepAlive | None, restart_url: str | None = None
    ) -> Delta:
        complete = delta_link is None
        if delta_link:
            page = await self._graph.fetch_url(delta_link)
        elif restart_url:
            page = await self._graph.fetch_url(restart_url)
        else:
            page = await self._graph.drive_delta(drive_id)
        latest: dict[str, SourceChange] = {}
        for _ in range(MAX_PAGES):
            for item in page.get("value") or []:
                change = _change(item)
                if change is not None:
                    # Later pages hold the newer state; dict order follows the last sighting.
                    latest.pop(change.item_id, None)
                    latest[change.item_id] = change
            next_link = page.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                if keep_alive is not None:
                    await keep_alive()
                page = await self._graph.fetch_url(next_link)
                continue
            final = page.get("@odata.deltaLink")
            if not isinstance(final, str) or not final:
                raise GraphRequestError("delta ended without a deltaLink")
            return Delta(drive_id, list(latest.values()), final, complete)
        raise GraphRequestError(f"delta exceeded {MAX_PAGES} pages")

    async def _drive_id(self, resource: str) -> str:
        match = _DRIVE_ROOT.match(resource.strip("/"))
        if match is None:
            raise GraphRequestError(f"not a drive root: {resource!r}")
        if match["drive"]:
            return match["drive"]
        if resource not in self._drive_ids:
            self._drive_ids[resource] = await self._graph.drive_id(match["owner"], match["owner_id"])
        return self._drive_ids[resource]


def _change(item: Any) -> SourceChange | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    if item.get("deleted") is not None or "@removed" in item:
        return SourceChange(item["id"], None, None)
    version = item.get("eTag") or item.get("cTag") or item.get("lastModifiedDateTime") or ""
    return SourceChange(item["id"], str(version), item)
