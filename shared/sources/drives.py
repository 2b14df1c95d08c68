"""Drive items (OneDrive for work or school, SharePoint libraries) read by drive delta.

Follows driveitem-delta: page through @odata.nextLink to @odata.deltaLink; the
same item may appear more than once (the last one wins); deleted items carry a
``deleted`` facet; a stale token answers 410 and the drive must be enumerated
again from the Location given.
"""

from __future__ import annotations

from shared.errors import GraphRequestError
from shared.graph import GraphGateway
from shared.model.catalog import DRIVE_ROOT
from shared.model.changes import NO_STATE, PLAIN, Page, ReadByDelta, SourceState, delta_page
from shared.sources.delta import item_change


class DriveSource(ReadByDelta):
    """The ChangeSource for drive roots."""

    kind = "driveItem"
    traits = PLAIN

    def __init__(self, graph: GraphGateway) -> None:
        self._graph = graph
        self._drive_ids: dict[str, str] = {}

    def handles(self, resource: str) -> bool:
        """Drive roots: drives/{id}/root, users/{id}/drive/root, groups/{id}/drive/root, sites/{id}/drive/root."""
        return DRIVE_ROOT.match(resource.strip("/")) is not None

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One delta page: at ``link``, or the first page of a full enumeration."""
        drive_id = await self._drive_id(resource)
        body = await self._graph.fetch_url(link) if link else await self._graph.drive_delta(drive_id)
        changes = [
            change
            for item in body.get("value") or []
            if (change := item_change(item, "eTag", "cTag", "lastModifiedDateTime")) is not None
        ]
        return delta_page(drive_id, changes, body)

    async def _drive_id(self, resource: str) -> str:
        match = DRIVE_ROOT.match(resource.strip("/"))
        if match is None:
            raise GraphRequestError(f"not a drive root: {resource!r}")
        if match["drive"]:
            return match["drive"]
        if resource not in self._drive_ids:
            self._drive_ids[resource] = await self._graph.drive_id(match["owner"], match["owner_id"])
        return self._drive_ids[resource]
