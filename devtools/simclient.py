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

    async def drives(self) -> list[dict[str, Any]]:
        """Every drive: id, rootId, owners, seq and its number of live items."""
        return list((await self.call("GET", "/drives"))["value"])

    async def item(self, drive_id: str, item_id: str) -> dict[str, Any]:
        """An item as Graph would return it."""
        return dict(await self.call("GET", f"/drives/{drive_id}/items/{item_id}"))

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

    # SharePoint's own REST list webhooks (devtools/graphsim/models/sharepoint.py, routes/control_sharepoint.py).

    async def sp_site(self, name: str) -> dict[str, Any]:
        """A SharePoint site: {"url", "webId"}."""
        return dict(await self.call("POST", "/sharepoint/sites", {"name": name}))

    async def sp_list(self, site: str, list_id: str | None = None) -> str:
        """A list on site ``site`` (its name); returns the list id."""
        return str((await self.call("POST", "/sharepoint/lists", {"site": site, "id": list_id}))["id"])

    async def sp_add_item(self, list_id: str, **fields: Any) -> dict[str, Any]:
        """Add a list item with ``fields``; returns it (Id, UniqueId, ...)."""
        return dict(await self.call("POST", f"/sharepoint/lists/{list_id}/items", {"fields": fields}))

    async def sp_update_item(self, list_id: str, item_id: int, **fields: Any) -> dict[str, Any]:
        """Change a list item's fields."""
        return dict(await self.call("PATCH", f"/sharepoint/lists/{list_id}/items/{item_id}", {"fields": fields}))

    async def sp_delete_item(self, list_id: str, item_id: int) -> None:
        """Delete a list item (logged and notified)."""
        await self.call("DELETE", f"/sharepoint/lists/{list_id}/items/{item_id}")

    async def sp_delete_quietly(self, list_id: str, item_id: int) -> None:
        """Delete a list item with no change record and no notification."""
        await self.call("POST", f"/sharepoint/lists/{list_id}/quiet", {"item": item_id})

    async def sp_expire_tokens(self, list_id: str) -> None:
        """Make every change token issued so far older than the list's change log."""
        await self.call("POST", f"/sharepoint/lists/{list_id}/expire-tokens")

    async def sp_subscriptions(self) -> list[dict[str, Any]]:
        """Every list subscription, with its listId."""
        return list(await self.call("GET", "/sharepoint/subscriptions"))

    async def sp_drop_subscription(self, subscription_id: str) -> None:
        """Make SharePoint lose a list subscription."""
        await self.call("DELETE", f"/sharepoint/subscriptions/{subscription_id}")

    async def sp_add_subscription(self, list_id: str, notification_url: str) -> dict[str, Any]:
        """A list subscription this app did not make (no handshake, unknown clientState)."""
        body = {"notificationUrl": notification_url, "clientState": "someone-else"}
        return dict(await self.call("POST", f"/sharepoint/lists/{list_id}/subscriptions", body))

    async def sp_register_certificate(self, pem: str) -> str:
        """Register the app's public certificate for client assertions; returns its x5t."""
        return str((await self.call("POST", "/sharepoint/certificates", {"pem": pem}))["thumbprint"])

    async def sp_delivery(self, **options: Any) -> None:
        """SharePoint delivery options: retries, retrySeconds, handshakeSeconds."""
        await self.call("POST", "/sharepoint/delivery", options)

    async def sp_stats(self) -> dict[str, Any]:
        """SharePoint counters."""
        return dict(await self.call("GET", "/sharepoint/stats"))

    async def create_list(self, site_id: str, list_id: str | None = None, name: str = "List") -> dict[str, Any]:
        """A new SharePoint list in a site: {"id", "siteId", "name", "resource"}."""
        return dict(await self.call("POST", f"/sites/{site_id}/lists", {"id": list_id, "name": name}))

    async def create_list_item(self, site_id: str, list_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A new list item with these column values: the listItem with its fields."""
        return dict(await self.call("POST", f"/sites/{site_id}/lists/{list_id}/items", {"fields": fields}))

    async def update_list_item(
        self, site_id: str, list_id: str, item_id: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Change some column values of a list item."""
        path = f"/sites/{site_id}/lists/{list_id}/items/{item_id}"
        return dict(await self.call("PATCH", path, {"fields": fields}))

    async def delete_list_item(self, site_id: str, list_id: str, item_id: str) -> None:
        """Delete a list item."""
        await self.call("DELETE", f"/sites/{site_id}/lists/{list_id}/items/{item_id}")

    async def restore_list_item(self, site_id: str, list_id: str, item_id: str) -> dict[str, Any]:
        """Bring a deleted list item back (the recycle bin's restore)."""
        return dict(await self.call("POST", f"/sites/{site_id}/lists/{list_id}/items/{item_id}/restore"))

    async def restore_directory_object(self, collection: str, object_id: str) -> dict[str, Any]:
        """Restore a deleted user or group."""
        return dict(await self.call("POST", f"/{collection}/{object_id}/restore"))

    async def restore_outlook_item(self, user_id: str, item_id: str) -> dict[str, Any]:
        """Bring a deleted message, event or contact back, under its id."""
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/items/{item_id}/restore"))

    async def sp_restore_item(self, list_id: str, item_id: int) -> dict[str, Any]:
        """Restore a SharePoint list item from the recycle bin."""
        return dict(await self.call("POST", f"/sharepoint/lists/{list_id}/items/{item_id}/restore"))

    async def expire_list_tokens(self, site_id: str, list_id: str) -> None:
        """Make every delta token issued so far for the list stale (410 Gone)."""
        await self.call("POST", f"/sites/{site_id}/lists/{list_id}/expire-tokens")

    async def create_user(self, user_id: str | None = None, **props: Any) -> dict[str, Any]:
        """A new user (``displayName`` and other properties as keywords)."""
        return dict(await self.call("POST", "/users", {"id": user_id, **props}))

    async def generate_users(self, count: int, prefix: str = "user") -> list[str]:
        """``count`` users at once, without notifications: their ids."""
        return list((await self.call("POST", "/users:generate", {"count": count, "prefix": prefix}))["ids"])

    async def create_group(
        self, group_id: str | None = None, members: list[str] | None = None, **props: Any
    ) -> dict[str, Any]:
        """A new group with these members (user ids)."""
        return dict(await self.call("POST", "/groups", {"id": group_id, "members": members or [], **props}))

    async def update_directory_object(self, collection: str, object_id: str, **props: Any) -> dict[str, Any]:
        """Change properties of a user or group (``collection``: users or groups)."""
        return dict(await self.call("PATCH", f"/{collection}/{object_id}", props))

    async def delete_directory_object(self, collection: str, object_id: str) -> None:
        """Delete a user or group (a deleted user leaves its groups)."""
        await self.call("DELETE", f"/{collection}/{object_id}")

    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add users to a group: its members after."""
        return list((await self.call("POST", f"/groups/{group_id}/members", {"ids": user_ids}))["members"])

    async def remove_member(self, group_id: str, user_id: str) -> list[str]:
        """Remove a user from a group: its members after."""
        return list((await self.call("DELETE", f"/groups/{group_id}/members/{user_id}"))["members"])

    async def directory_stats(self) -> dict[str, Any]:
        """Per collection (users, groups): objects, deltaRuns, deltaRequests, enumerations."""
        return dict(await self.call("GET", "/directory"))

    async def expire_directory_tokens(self, collection: str) -> None:
        """Make every users (or groups) delta token issued so far answer syncStateNotFound."""
        await self.call("POST", f"/{collection}/expire-tokens")

    async def create_mailbox(self, user_id: str | None = None) -> dict[str, Any]:
        """A new Outlook mailbox: {"userId", "mailFolders": {well-known name: id}, "contactsFolderId"}."""
        return dict(await self.call("POST", "/outlook/mailboxes", {"userId": user_id}))

    async def create_mail_folder(self, user_id: str, name: str, parent_id: str | None = None) -> dict[str, Any]:
        """A new mail folder (a child of ``parent_id``, else top-level): {"id", "displayName", "parentFolderId"}."""
        body = {"displayName": name, "parentFolderId": parent_id}
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/mailFolders", body))

    async def create_contact_folder(self, user_id: str, name: str) -> dict[str, Any]:
        """A new contact folder."""
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/contactFolders", {"displayName": name}))

    async def create_message(self, user_id: str, folder_id: str = "inbox", **props: Any) -> dict[str, Any]:
        """A new message in a mail folder (id or well-known name): the message as Graph renders it."""
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/messages", {"folderId": folder_id, **props}))

    async def create_event(
        self, user_id: str, start: datetime | str, end: datetime | str, **props: Any
    ) -> dict[str, Any]:
        """A new event in the primary calendar, from ``start`` to ``end``."""
        body = {"start": _iso(start), "end": _iso(end), **props}
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/events", body))

    async def create_contact(self, user_id: str, folder_id: str | None = None, **props: Any) -> dict[str, Any]:
        """A new contact in a contact folder (default: the default contacts folder)."""
        return dict(await self.call("POST", f"/outlook/mailboxes/{user_id}/contacts", {"folderId": folder_id, **props}))

    async def update_outlook_item(self, user_id: str, item_id: str, **props: Any) -> dict[str, Any]:
        """Change a message's, event's or contact's properties (one change)."""
        return dict(await self.call("PATCH", f"/outlook/mailboxes/{user_id}/items/{item_id}", props))

    async def move_outlook_item(self, user_id: str, item_id: str, folder_id: str) -> dict[str, Any]:
        """Move a message (or contact) to another folder; its id stays."""
        path = f"/outlook/mailboxes/{user_id}/items/{item_id}/move"
        return dict(await self.call("POST", path, {"folderId": folder_id}))

    async def delete_outlook_item(self, user_id: str, item_id: str) -> None:
        """Delete a message, event or contact."""
        await self.call("DELETE", f"/outlook/mailboxes/{user_id}/items/{item_id}")

    async def expire_outlook_tokens(self, user_id: str) -> None:
        """Make every delta token issued so far for the mailbox answer 410."""
        await self.call("POST", f"/outlook/mailboxes/{user_id}/expire-tokens")

    async def create_team(
        self, channels: list[str] | dict[str, str] | None = None, team_id: str | None = None
    ) -> dict[str, Any]:
        """A new team with channels (names, or names to ids; default: General): ``{"id", "channels": {name: id}}``."""
        return dict(await self.call("POST", "/teams", {"id": team_id, "channels": channels or ["General"]}))

    async def create_chat(self, chat_id: str | None = None) -> str:
        """A new chat; returns its id."""
        return str((await self.call("POST", "/chats", {"id": chat_id}))["id"])

    @staticmethod
    def _messages(team_id: str | None, channel_id: str | None, chat_id: str | None) -> str:
        return f"/teams/{team_id}/channels/{channel_id}/messages" if team_id else f"/chats/{chat_id}/messages"

    async def post_message(
        self, content: str, *, team_id: str | None = None, channel_id: str | None = None, chat_id: str | None = None
    ) -> dict[str, Any]:
        """Post a message in a channel (team_id, channel_id) or a chat (chat_id); returns the chatMessage."""
        path = self._messages(team_id, channel_id, chat_id)
        return dict(await self.call("POST", path, {"content": content}))

    async def edit_message(
        self,
        message_id: str,
        content: str,
        *,
        team_id: str | None = None,
        channel_id: str | None = None,
        chat_id: str | None = None,
    ) -> dict[str, Any]:
        """Change a message's text."""
        path = f"{self._messages(team_id, channel_id, chat_id)}/{message_id}"
        return dict(await self.call("PATCH", path, {"content": content}))

    async def delete_message(
        self, message_id: str, *, team_id: str | None = None, channel_id: str | None = None, chat_id: str | None = None
    ) -> None:
        """Soft-delete a message."""
        await self.call("DELETE", f"{self._messages(team_id, channel_id, chat_id)}/{message_id}")

    async def undelete_message(
        self, message_id: str, *, team_id: str | None = None, channel_id: str | None = None, chat_id: str | None = None
    ) -> dict[str, Any]:
        """Undo a message's soft delete."""
        path = f"{self._messages(team_id, channel_id, chat_id)}/{message_id}/undoSoftDelete"
        return dict(await self.call("POST", path))

    async def spoil_rich(self, *faults: str, token_version: int | None = None) -> dict[str, Any]:
        """Spoil the next rich batches, one fault each: forged, expired, wrong-audience, other-tenant, tampered,
        unknown-certificate; ``token_version`` 1 or 2 sets the form of the validation tokens."""
        body: dict[str, Any] = {"next": list(faults)}
        if token_version is not None:
            body["tokenVersion"] = token_version
        return dict(await self.call("POST", "/rich", body))


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value
