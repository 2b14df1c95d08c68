"""A small client for the Graph simulator's control API (`/_sim`)."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp


class SimControl:
    """Seed drives and items, read counters, inject faults and steer the simulator's clock."""

    def __init__(self, control_url: str) -> None:
        self._base = control_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimControl:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, limit_seconds: float | None = None
    ) -> Any:
        """Call the control API; raise on any non-2xx answer (``limit_seconds`` overrides the 30 s limit)."""
        assert self._session is not None, "use SimControl as an async context manager"
        extra: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=limit_seconds)} if limit_seconds else {}
        async with self._session.request(method, self._base + path, json=body, **extra) as response:
            text = await response.text()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path} answered {response.status}: {text}")
            return await response.json(content_type=None) if text else None

    async def create_drive(self, drive_id: str | None = None, **owners: str) -> dict[str, Any]:
        """A new drive (optionally owned by userId or siteId)."""
        return dict(await self.call("POST", "/drives", {"id": drive_id, **owners}))

    async def create_item(
        self,
        drive_id: str,
        name: str,
        content: str = "",
        folder: bool = False,
        *,
        created: datetime | str | None = None,
        modified: datetime | str | None = None,
        parent_id: str | None = None,
    ) -> dict[str, Any]:
        """A new file (or folder) in the root or ``parent_id``; ``created``/``modified`` set its
        times, as for a file moved in or migrated with its original createdDateTime."""
        body: dict[str, Any] = {"name": name, "content": content, "folder": folder}
        if created is not None:
            body["createdDateTime"] = _iso(created)
        if modified is not None:
            body["lastModifiedDateTime"] = _iso(modified)
        if parent_id is not None:
            body["parentId"] = parent_id
        return dict(await self.call("POST", f"/drives/{drive_id}/items", body))

    async def generate_items(
        self,
        drive_id: str,
        count: int,
        folders: int | None = None,
        notify: bool = False,
        *,
        prefix: str | None = None,
        size_bytes: int | None = None,
    ) -> dict[str, Any]:
        """``count`` files over ``folders`` new folders (default max(1, count // 1000)), fast.

        Returns {"count", "folders", "seq", "sampleIds", "folderIds"}; no notifications
        unless ``notify``.
        """
        body: dict[str, Any] = {"count": count, "notify": notify}
        if folders is not None:
            body["folders"] = folders
        if prefix is not None:
            body["prefix"] = prefix
        if size_bytes is not None:
            body["sizeBytes"] = size_bytes
        return dict(await self.call("POST", f"/drives/{drive_id}/items:generate", body, limit_seconds=600))

    async def create_items(self, drive_id: str, count: int, prefix: str = "file") -> Any:
        """Many new files in one call: a burst of changes."""
        return await self.call("POST", f"/drives/{drive_id}/items:bulk", {"count": count, "prefix": prefix})

    async def rename_item(self, drive_id: str, item_id: str, name: str) -> dict[str, Any]:
        """Rename an item."""
        return dict(await self.call("PATCH", f"/drives/{drive_id}/items/{item_id}", {"name": name}))

    async def update_item(self, drive_id: str, item_id: str, content: str) -> dict[str, Any]:
        """Change an item's content."""
        return dict(await self.call("PATCH", f"/drives/{drive_id}/items/{item_id}", {"content": content}))

    async def move_item(self, drive_id: str, item_id: str, parent_id: str) -> dict[str, Any]:
        """Move an item into another folder (its eTag changes, its lastModifiedDateTime does not)."""
        return dict(await self.call("PATCH", f"/drives/{drive_id}/items/{item_id}", {"parentId": parent_id}))

    async def delete_item(self, drive_id: str, item_id: str) -> None:
        """Delete an item."""
        await self.call("DELETE", f"/drives/{drive_id}/items/{item_id}")

    async def restore_item(self, drive_id: str, item_id: str) -> dict[str, Any]:
        """Bring a deleted item back (with what was deleted with it): the item plus "restored"."""
        return dict(await self.call("POST", f"/drives/{drive_id}/items/{item_id}/restore"))

    async def expire_tokens(self, drive_id: str) -> None:
        """Make every delta token issued so far for the drive stale (410 Gone)."""
        await self.call("POST", f"/drives/{drive_id}/expire-tokens")

    async def stats(self) -> dict[str, Any]:
        """Counters: delta runs per drive, deliveries, subscription writes."""
        return dict(await self.call("GET", "/stats"))

    async def reset_stats(self) -> None:
        """Zero the counters."""
        await self.call("POST", "/stats/reset")

    async def subscriptions(self) -> list[dict[str, Any]]:
        """Every live subscription, clientState included."""
        found = await self.call("GET", "/subscriptions")
        return list(found["value"] if isinstance(found, dict) else found)

    async def drop_subscription(self, subscription_id: str) -> None:
        """Delete a subscription on Graph's side, without telling anyone."""
        await self.call("DELETE", f"/subscriptions/{subscription_id}")

    async def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle event for a subscription."""
        await self.call("POST", f"/subscriptions/{subscription_id}/lifecycle", {"event": event})

    async def fault(
        self, path: str, status: int, count: int = 1, method: str | None = None, retry_after: int | None = None
    ) -> None:
        """Make the next ``count`` matching Graph requests fail with ``status``."""
        body: dict[str, Any] = {"path": path, "status": status, "count": count}
        if method:
            body["method"] = method
        if retry_after is not None:
            body["retryAfter"] = retry_after
        await self.call("POST", "/faults", body)

    async def delivery(self, **options: Any) -> None:
        """Change delivery; options are sent as given (camelCase) and each is optional.

        - ``duplicates=N``: send each delivered batch N times.
        - ``paused=bool``: hold delivery; notifications keep queuing.
        - ``drop=bool``: while true, new change notifications are never sent, only counted
          in stats ``delivery.itemsDropped`` (lifecycle ones still go); delta still shows
          the changes.
        - ``delaySeconds=x``: each batch waits x seconds before its first attempt.
        - ``deltaLagSeconds=x``: changes show in delta only x seconds after they happen,
          while their notifications go at once.

        ``reset`` turns drop, delaySeconds and deltaLagSeconds off again.
        """
        await self.call("POST", "/delivery", options)

    async def advance_clock(self, seconds: float) -> None:
        """Move the simulator's clock forward."""
        await self.call("POST", "/clock", {"advanceSeconds": seconds})


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value
