"""Users and groups read by users delta and groups delta (resources ``users`` and ``groups``).

Follows the directory delta queries: page through @odata.nextLink to
@odata.deltaLink; a removed object comes back as its id with ``@removed``; a
group's membership changes come as ``members@delta`` (a member that left carries
``@removed``). An expired delta token (seven days for directory objects) answers
400 ``syncStateNotFound``: that, like a 410, means enumerate again.

Directory objects have no eTag or modification time, so an item's version is a
hash of what delta returned for it; and an enumeration (the first pass, a resync)
indexes items it has not seen silently, unless their ``createdDateTime`` says they
were created since the last completed pass. A user or group is therefore ``created``
exactly when it first appears after the baseline, even across a resync.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.clock import optional_time
from shared.errors import GraphRequestError, ResyncRequiredError
from shared.model.catalog import DIRECTORY
from shared.model.changes import NO_STATE, PLAIN, Page, ReadByDelta, SourceChange, SourceState, delta_page
from shared.sources.delta import GraphReader

# Small but useful items: who the object is, not every property Graph has.
SELECT = {
    "users": "id,displayName,userPrincipalName,mail,accountEnabled,jobTitle,department,createdDateTime",
    "groups": "id,displayName,description,mail,mailEnabled,securityEnabled,groupTypes,createdDateTime,members",
}
# Graph's answer to a directory delta token past its lifetime.
EXPIRED_TOKEN_CODES = frozenset({"syncstatenotfound", "syncstateinvalid"})


class DirectorySource(ReadByDelta):
    """The ChangeSource for ``users`` and ``groups``: events of kind ``user`` or ``group``."""

    traits = PLAIN

    def __init__(self, graph: GraphReader, collection: str) -> None:
        if collection not in SELECT:
            raise ValueError(f"not a directory collection: {collection!r}")
        self._graph = graph
        self._collection = collection
        self.kind = collection[:-1]  # user, group: Graph's type names

    def handles(self, resource: str) -> bool:
        """``users`` or ``groups``, whichever this source reads."""
        match = DIRECTORY.match(resource.strip("/"))
        return match is not None and match["collection"] == self._collection

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One delta page: at ``link``, or the first page of a full enumeration."""
        try:
            if link:
                body = await self._graph.fetch_url(link)
            else:
                body = await self._graph.fetch_path(f"{self._collection}/delta", {"$select": SELECT[self._collection]})
        except ResyncRequiredError:
            raise
        except GraphRequestError as exc:
            if exc.code.lower() in EXPIRED_TOKEN_CODES or "syncstatenotfound" in str(exc).lower():
                raise ResyncRequiredError(f"{self._collection} delta token expired", None) from exc
            raise
        return to_page(self._collection, body)


def to_page(collection: str, body: dict[str, Any]) -> Page:
    """A users or groups delta response as a Page whose container is the collection."""
    changes = [change for item in body.get("value") or [] if (change := to_change(item)) is not None]
    return delta_page(collection, changes, body)


# A group's membership changes: listed whole by an enumeration, as changes by a delta round.
MEMBERS = "members@delta"


def version_of(item: dict[str, Any]) -> str:
    """A stable version for a directory object: the hash of what delta returned for it, members aside."""
    return _digest({k: v for k, v in item.items() if k != MEMBERS})


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def to_change(item: Any) -> SourceChange | None:
    """One delta object as a change; ``@removed`` at the top level is a deletion."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    if "@removed" in item:
        return SourceChange(item["id"], None, None, dated=False)
    # No modification time, but a creation time: a resync reports an object created since as created.
    created = optional_time(item.get("createdDateTime"))
    # A membership change is news in a delta round; an enumeration lists every member, which is no change.
    detail = _digest(item[MEMBERS]) if item.get(MEMBERS) else ""
    return SourceChange(item["id"], version_of(item), item, created_at=created, dated=False, detail=detail)
