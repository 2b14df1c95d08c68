"""SharePoint lists as SharePoint's own REST API keeps them: items, a change log, webhook subscriptions.

What it follows (sp-dev-docs docs/apis/webhooks): subscriptions last at most 180 days;
creation first POSTs ``{notificationUrl}?validationtoken={token}`` and needs the token
echoed as text/plain within 5 s; notifications ``{"value": [...]}`` carry subscriptionId,
clientState, expirationDateTime, resource (the list id), tenantId, siteUrl
(server-relative) and webId, no change details; one POST per URL carries what queued
meanwhile; a failed delivery is retried 5 times, 5 minutes apart (both configurable for
tests). Change tokens read ``1;3;{list-id};{ticks};{change number}``. The REST API
itself: routes/sharepoint.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from ..clock import graph_time, item_time
from ..config import SimConfig
from ..errors import sharepoint_not_found

log = logging.getLogger("graphsim.sharepoint")
MAX_LIFETIME = timedelta(days=180)
HANDSHAKE_SECONDS = 5.0
# .NET ticks at the Unix epoch: change tokens carry ticks.
_EPOCH_TICKS = 621355968000000000


@dataclass
class SPItem:
    """A list item: its integer id, its UniqueId and fields."""

    id: int
    unique_id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            **self.fields,
            "Id": self.id,
            "ID": self.id,
            "UniqueId": self.unique_id,
            "GUID": str(uuid.uuid5(uuid.NAMESPACE_OID, self.unique_id)),
            "Created": item_time(self.created),
            "Modified": item_time(self.modified),
            "owshiddenversion": self.version,
            "OData__UIVersionString": f"{self.version}.0",
        }


@dataclass
class Change:
    """One change log entry."""

    number: int
    item_id: int
    unique_id: str
    change_type: int
    time: datetime


@dataclass
class SPSubscription:
    """A list webhook subscription."""

    id: str
    list_id: str
    notification_url: str
    client_state: str | None
    expiration: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "clientState": self.client_state,
            "expirationDateTime": graph_time(self.expiration),
            "notificationUrl": self.notification_url,
            "resource": self.list_id,
            "resourceData": None,
        }


@dataclass
class SPList:
    """A list or library with its items, change log and subscriptions."""

    id: str
    site: str
    items: dict[int, SPItem] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    number: int = 0
    log_start: int = 0  # tokens before this change number have expired
    next_item: int = 1
    subs: dict[str, SPSubscription] = field(default_factory=dict)
    recycled: dict[int, SPItem] = field(default_factory=dict)  # the recycle bin

    def token(self, number: int, moment: datetime) -> str:
        ticks = _EPOCH_TICKS + int(moment.timestamp() * 10_000_000)
        return f"1;3;{self.id};{ticks};{number}"


@dataclass
class SPStats:
    """Counters for the control API."""

    handshakes: int = 0
    deliveries: int = 0
    delivered_items: int = 0
    failures: int = 0
    dropped: int = 0
    tokens_issued: int = 0
    token_failures: int = 0
    requests: int = 0
    auth_failures: int = 0
    get_changes: int = 0
    item_reads: int = 0


@dataclass
class _Batch:
    items: list[dict[str, Any]]
    tries: int = 0


class SharePointSim:
    """Sites, lists, subscriptions and notification delivery."""

    def __init__(
        self, config: SimConfig, now: Callable[[], datetime], session: Callable[[], aiohttp.ClientSession]
    ) -> None:
        self.config = config
        self.tenant_id = config.tenant_id  # the tenant whose notifications these are (its tenantId)
        self.now = now
        self._session = session
        self.sites: dict[str, str] = {}  # site name -> web id
        self.lists: dict[str, SPList] = {}
        self.stats = SPStats()
        self.retries = 5
        self.retry_seconds = 300.0
        self.handshake_seconds = HANDSHAKE_SECONDS
        self.base_url = ""
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def find(self, list_id: str) -> SPList:
        found = self.lists.get(list_id.lower())
        if found is None:
            raise sharepoint_not_found("List")
        return found

    def expire(self, target: SPList) -> None:
        """SharePoint deletes a subscription once it expires."""
        now = self.now()
        for sub in [s for s in target.subs.values() if s.expiration <= now]:
            del target.subs[sub.id]

    # Changes -------------------------------------------------------------------------------

    def add_item(self, target: SPList, fields: dict[str, Any]) -> SPItem:
        """A new item with these fields (change log: Add)."""
        now = self.now()
        item = SPItem(target.next_item, str(uuid.uuid4()), dict(fields), now, now)
        target.next_item += 1
        target.items[item.id] = item
        self.change(target, item, 1)
        return item

    def update_item(self, target: SPList, item: SPItem, fields: dict[str, Any]) -> None:
        """Change some fields: a new version (change log: Update)."""
        item.fields.update(fields)
        item.version += 1
        item.modified = self.now()
        self.change(target, item, 2)

    def delete_item(self, target: SPList, item: SPItem) -> None:
        """Move an item to the recycle bin (change log: DeleteObject)."""
        del target.items[item.id]
        target.recycled[item.id] = item
        self.change(target, item, 3)

    def restore_item(self, target: SPList, item: SPItem) -> None:
        """Bring an item back from the recycle bin: a new version (change log: Restore, ChangeType 7)."""
        del target.recycled[item.id]
        item.version += 1
        item.modified = self.now()
        target.items[item.id] = item
        self.change(target, item, 7)

    def change(self, target: SPList, item: SPItem, change_type: int) -> None:
        target.number += 1
        target.log.append(Change(target.number, item.id, item.unique_id, change_type, self.now()))
        self._notify(target)

    def _notify(self, target: SPList) -> None:
        now = self.now()
        for sub in target.subs.values():
            if sub.expiration <= now:
                continue
            item = {
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "expirationDateTime": graph_time(sub.expiration),
                "resource": target.id,
                "tenantId": self.tenant_id,
                "siteUrl": f"/sites/{target.site}",
                "webId": self.sites[target.site],
            }
            first = sub.notification_url not in self._pending
            self._pending.setdefault(sub.notification_url, []).append(item)
            if first:
                self._spawn(self._flush(sub.notification_url))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, url: str) -> None:
        await asyncio.sleep(0.05)  # what queues meanwhile goes in the same POST
        batch = _Batch(self._pending.pop(url, []))
        while batch.items:
            batch.tries += 1
            if await self._post(url, batch.items):
                return
            if batch.tries > self.retries:
                self.stats.dropped += len(batch.items)
                log.info("dropped %d SharePoint notifications after %d tries", len(batch.items), batch.tries)
                return
            await asyncio.sleep(self.retry_seconds)

    async def _post(self, url: str, items: list[dict[str, Any]]) -> bool:
        self.stats.deliveries += 1
        try:
            async with self._session().post(
                url, json={"value": items}, timeout=aiohttp.ClientTimeout(total=self.config.delivery_timeout_seconds)
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.stats.delivered_items += len(items)
        else:
            self.stats.failures += 1
        return ok

    async def handshake(self, url: str) -> bool:
        """POST ``?validationtoken=``; True when the token came back as text/plain in time."""
        self.stats.handshakes += 1
        token = str(uuid.uuid4())
        parts = urlsplit(url)
        extra = "validationtoken=" + quote(token, safe="")
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, f"{parts.query}&{extra}".lstrip("&"), ""))
        try:
            async with self._session().post(
                target, data=b"", timeout=aiohttp.ClientTimeout(total=self.handshake_seconds)
            ) as resp:
                body = await resp.text()
                ctype = resp.headers.get("Content-Type", "")
                return resp.status == 200 and body == token and ctype.lower().startswith("text/plain")
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
