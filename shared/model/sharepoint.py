"""SharePoint lists as this app names them, and the pure parts of their REST API.

A watched list is named by its REST URL, ``{site}/_api/web/lists('{list-id}')``,
which is also the ``resource`` SharePoint's subscription API takes; it is the
subscription resource stored in the subscriptions table. Facts used here come
from SharePoint's webhook documentation (sp-dev-docs docs/apis/webhooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# A subscription lives at most 180 days (sp-dev-docs, "SharePoint webhooks").
MAX_LIFETIME_DAYS = 180
# SPException raised by GetChanges when the token is older than the change log.
EXPIRED_TOKEN_CODE = "-2130575172"
# SP.ChangeType values that mean the item left the list.
DELETE_OBJECT = 3
MOVE_AWAY = 5
REMOVED = frozenset({DELETE_OBJECT, MOVE_AWAY})
LIST_RESOURCE = re.compile(r"^(?P<site>https?://[^/?#]+(?:/[^?#]*?)?)/_api/web/lists\('(?P<list>[0-9a-fA-F-]{36})'\)$")


@dataclass(frozen=True)
class SharePointList:
    """One list or library to watch: its site URL (no trailing slash) and its id (lower-case GUID)."""

    site: str
    list_id: str

    @property
    def resource(self) -> str:
        """The list's REST URL: the subscription resource."""
        return f"{self.site}/_api/web/lists('{self.list_id}')"

    @property
    def origin(self) -> str:
        """The site's scheme and host: tokens are issued for ``{origin}/.default``."""
        parts = urlsplit(self.site)
        return f"{parts.scheme}://{parts.netloc}"


def list_of(resource: str) -> SharePointList | None:
    """The list a subscription resource names, or None when it is not a SharePoint list URL."""
    match = LIST_RESOURCE.match(resource.strip())
    if match is None:
        return None
    return SharePointList(match["site"].rstrip("/"), match["list"].lower())


def is_list_resource(resource: str) -> bool:
    """True for a SharePoint list's REST URL."""
    return list_of(resource) is not None


def expired_token(body: Any) -> bool:
    """True for the SPException GetChanges raises on a token older than the change log.

    Its HTTP status is undocumented, so only the error code counts; the error
    object is ``odata.error`` in JSON light and ``error`` in verbose JSON.
    """
    if not isinstance(body, dict):
        return False
    error = body.get("odata.error") or body.get("error")
    if not isinstance(error, dict):
        return False
    code = str(error.get("code") or "")
    return code.split(",", 1)[0].strip() == EXPIRED_TOKEN_CODE


@dataclass(frozen=True)
class ChangeRecord:
    """One SP.ChangeItem: which item, what happened, and the token just past it."""

    item_id: int
    unique_id: str | None
    change_type: int
    token: str

    @property
    def removed(self) -> bool:
        """True when the item left the list (deleted or moved away)."""
        return self.change_type in REMOVED


def parse_changes(body: Any) -> list[ChangeRecord]:
    """The change records of a GetChanges answer (JSON light ``value`` or verbose ``d.results``)."""
    if not isinstance(body, dict):
        return []
    rows = body.get("value")
    if rows is None and isinstance(body.get("d"), dict):
        rows = body["d"].get("results")
    records: list[ChangeRecord] = []
    for row in rows or []:
        if not isinstance(row, dict) or not isinstance(row.get("ItemId"), int):
            continue
        token = row.get("ChangeToken")
        text = token.get("StringValue") if isinstance(token, dict) else token
        if not isinstance(text, str) or not text:
            continue
        unique = row.get("UniqueId")
        records.append(
            ChangeRecord(row["ItemId"], str(unique).lower() if unique else None, int(row.get("ChangeType") or 0), text)
        )
    return records


def latest_per_item(records: list[ChangeRecord]) -> list[ChangeRecord]:
    """One record per item, the last one wins, in the order items last changed."""
    last: dict[int, ChangeRecord] = {}
    for record in records:
        last.pop(record.item_id, None)
        last[record.item_id] = record
    return list(last.values())


def next_link_of(body: Any) -> str | None:
    """The next page's URL of an items collection (JSON light or verbose)."""
    if not isinstance(body, dict):
        return None
    for key in ("odata.nextLink", "@odata.nextLink", "__next"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    inner = body.get("d")
    if isinstance(inner, dict) and isinstance(inner.get("__next"), str):
        return str(inner["__next"])
    return None
