"""SharePoint list items, read through the list's change log (GetChanges) from a stored change token.

The synchronizer's links are this source's own strings:
- ``changes|{token}``: GetChanges after ``token``, ``FETCH_LIMIT`` records a page;
  a full page means more may follow (next link), a shorter one ends the round.
- ``items|{token}|{url}``: a page of a full enumeration of the list's items; the
  token was read before the enumeration began, so changes made during it are
  read afterwards, and the round ends at ``changes|{token}``.
GetChanges reports change records, not items: each changed item's fields are
fetched once per page (the last record of an item wins). A token older than the
change log raises SPException -2130575172, which is a resync (a 410 for drives):
the synchronizer enumerates the items and reports what the index holds but the
list no longer does as deleted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.clock import optional_time
from shared.errors import GraphRequestError
from shared.model.changes import NO_STATE, PLAIN, Page, ReadByDelta, SourceChange, SourceState
from shared.model.sharepoint import SharePointList, latest_per_item, list_of, next_link_of
from shared.sharepoint.client import SharePointClient

log = logging.getLogger(__name__)
# Change records per GetChanges page, and items per enumeration page.
FETCH_LIMIT = 200
PAGE_SIZE = 200
# Item reads in flight at once for one page.
ITEM_READS = 8
_CHANGES = "changes"
_ITEMS = "items"


class SharePointListSource(ReadByDelta):
    """The ChangeSource for SharePoint lists and libraries watched by SharePoint's own webhooks."""

    kind = "listItem"
    traits = PLAIN

    def __init__(self, client: SharePointClient, fetch_limit: int = FETCH_LIMIT, page_size: int = PAGE_SIZE) -> None:
        self._client = client
        self._fetch_limit = fetch_limit
        self._page_size = page_size
        self._webs: dict[str, str] = {}

    def handles(self, resource: str) -> bool:
        """A list's REST URL, ``{site}/_api/web/lists('{id}')``."""
        return list_of(resource) is not None

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One page: of changes after a token, of an enumeration, or the first page of one."""
        target = list_of(resource)
        if target is None:
            raise GraphRequestError(f"not a SharePoint list: {resource!r}")
        if link is None:
            token = await self._client.current_token(target)
            return await self._items(target, token, None)
        kind, _, rest = link.partition("|")
        if kind == _CHANGES and rest:
            return await self._changes(target, rest)
        token, _, url = rest.partition("|")
        if kind == _ITEMS and token:
            return await self._items(target, token, url or None)
        raise GraphRequestError("not a SharePoint list link")

    async def _changes(self, target: SharePointList, token: str) -> Page:
        records = await self._client.changes(target, token, self._fetch_limit)
        if not records:
            return Page(target.list_id, [], None, f"{_CHANGES}|{token}")
        gate = asyncio.Semaphore(ITEM_READS)
        web = await self._web(target)

        async def read(item_id: int, unique_id: str | None, removed: bool) -> SourceChange | None:
            if removed:
                return SourceChange(unique_id, None, None) if unique_id else None
            async with gate:
                fields = await self._client.item(target, item_id)
            if fields is None:
                # Gone since the change was logged: its own deletion record follows.
                return SourceChange(unique_id, None, None) if unique_id else None
            return _change(fields, target, web)

        latest = latest_per_item(records)
        found = await asyncio.gather(*(read(r.item_id, r.unique_id, r.removed) for r in latest))
        changes = [change for change in found if change is not None]
        skipped = len(latest) - len(changes)
        if skipped:
            log.warning("%d change records of list %s name no UniqueId: skipped", skipped, target.list_id)
        link = f"{_CHANGES}|{records[-1].token}"
        if len(records) >= self._fetch_limit:
            return Page(target.list_id, changes, link, None)
        return Page(target.list_id, changes, None, link)

    async def _items(self, target: SharePointList, token: str, url: str | None) -> Page:
        body = await self._client.items(target, url, self._page_size)
        web = await self._web(target)
        rows = body.get("value") if isinstance(body, dict) else None
        changes = [c for row in rows or [] if isinstance(row, dict) and (c := _change(row, target, web)) is not None]
        following = next_link_of(body)
        if following:
            return Page(target.list_id, changes, f"{_ITEMS}|{token}|{following}", None)
        return Page(target.list_id, changes, None, f"{_CHANGES}|{token}")

    async def _web(self, target: SharePointList) -> str:
        if target.site not in self._webs:
            self._webs[target.site] = await self._client.web_id(target.site)
        return self._webs[target.site]


def _change(fields: dict[str, Any], target: SharePointList, web_id: str) -> SourceChange | None:
    """An item as an event carries it: its fields, with siteUrl, webId and listId."""
    unique_id = fields.get("UniqueId")
    if not isinstance(unique_id, str) or not unique_id:
        return None
    # owshiddenversion grows with every write, even one that keeps the version label.
    version = fields.get("owshiddenversion") or fields.get("Modified") or ""
    item = {**fields, "siteUrl": target.site, "webId": web_id, "listId": target.list_id}
    return SourceChange(
        unique_id.lower(),
        str(version),
        item,
        created_at=optional_time(fields.get("Created")),
        modified_at=optional_time(fields.get("Modified")),
    )
