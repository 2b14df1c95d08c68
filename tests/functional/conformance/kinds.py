"""One driver per kind: how to subscribe to it, and how to make its items change in the simulator."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from devtools.graphsim.rich import make_certificate
from shared.clock import utcnow
from tests.functional.stacks import Stack

# How a kind's stored position is made stale for the resync check.
GONE = "410"  # the delta link answers 410 Gone
EXPIRED = "expired token"  # the token is past its lifetime (directory: syncStateNotFound; SharePoint: -2130575172)
MISSED = "missed"  # a lifecycle 'missed' (Outlook): Graph dropped notifications

_numbers = itertools.count(1)


@dataclass
class Item:
    """An item a driver made: ``id`` as events name it, ``handle`` as the simulator's control API does."""

    id: str
    handle: Any


class Driver:
    """What the kit needs of a kind. Subclasses fill in the simulator calls."""

    name = ""
    kind = ""  # the events' documented kind (schemas/change-event.schema.json)
    resource = ""
    change_type = "created,updated,deleted"
    stale = GONE
    rich = False  # subscribed with resource data (includeResourceData)
    notified_only = False  # changes come only in notifications: there is no delta to resync from

    async def stack(self, stack_factory: Any, tmp_path: Path) -> Stack:
        """A stack subscribed to this kind's resource, with the subscription's first pass done."""
        entry: dict[str, Any] = {"resource": self.resource, "changeType": self.change_type}
        env: dict[str, str] = {}
        if self.rich:
            entry["includeResourceData"] = True
            pfx = tmp_path / "notifications.pfx"
            pfx.write_bytes(make_certificate("conformance-kit").pfx("pfx-password"))
            env = {
                "NOTIFICATION_CERTIFICATE": str(pfx),
                "NOTIFICATION_CERTIFICATE_PASSWORD": "pfx-password",
                "NOTIFICATION_CERTIFICATE_ID": "kit-cert-1",
            }
        stack: Stack = await stack_factory(subscriptions=json.dumps([entry]), env=env)
        await self.prepare(stack)
        report = await stack.reconcile()
        assert (report.created, report.failed) == (1, 0), report
        return stack

    async def record(self, stack: Stack) -> Any:
        """The stored subscription record."""
        return await stack.record()

    async def prepare(self, stack: Stack) -> None:
        """Make the resource exist in the simulator, before subscribing."""

    async def create(self, stack: Stack) -> Item:
        raise NotImplementedError

    async def update(self, stack: Stack, item: Item) -> None:
        raise NotImplementedError

    async def delete(self, stack: Stack, item: Item) -> None:
        raise NotImplementedError

    async def restore(self, stack: Stack, item: Item) -> None:
        raise NotImplementedError

    async def make_stale(self, stack: Stack) -> None:
        """Make the stored position stale (for GONE and EXPIRED kinds)."""
        raise NotImplementedError


class Drive(Driver):
    name, kind = "drive", "driveItem"
    drive = "b!kit-drive"
    resource = f"drives/{drive}/root"
    change_type = "updated"

    async def prepare(self, stack: Stack) -> None:
        await stack.control.create_drive(self.drive)

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.create_item(self.drive, f"file-{next(_numbers)}.txt", "first")
        return Item(made["id"], made["id"])

    async def update(self, stack: Stack, item: Item) -> None:
        await stack.control.update_item(self.drive, item.handle, f"edit {next(_numbers)}")

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.delete_item(self.drive, item.handle)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.restore_item(self.drive, item.handle)

    async def make_stale(self, stack: Stack) -> None:
        await stack.control.expire_tokens(self.drive)


class GraphList(Driver):
    name, kind = "list", "listItem"
    site = "contoso.sharepoint.com,2c712604-1370-44e7-a1f5-426573fda80a,2d2244c3-251a-49ea-93a8-39e1c3a060fe"
    list_id = "22e03ef3-6ef4-424d-a1d3-92a337807c30"
    resource = f"sites/{site}/lists/{list_id}"
    change_type = "updated"

    async def prepare(self, stack: Stack) -> None:
        await stack.control.create_list(self.site, self.list_id, "Tasks")

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.create_list_item(self.site, self.list_id, {"Title": f"task {next(_numbers)}"})
        return Item(made["id"], made["id"])

    async def update(self, stack: Stack, item: Item) -> None:
        await stack.control.update_list_item(self.site, self.list_id, item.handle, {"Priority": next(_numbers)})

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.delete_list_item(self.site, self.list_id, item.handle)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.restore_list_item(self.site, self.list_id, item.handle)

    async def make_stale(self, stack: Stack) -> None:
        await stack.control.expire_list_tokens(self.site, self.list_id)


class _Outlook(Driver):
    user = "adele"

    async def prepare(self, stack: Stack) -> None:
        await stack.control.create_mailbox(self.user)

    async def update(self, stack: Stack, item: Item) -> None:
        await stack.control.update_outlook_item(self.user, item.handle, subject=f"edit {next(_numbers)}")

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.delete_outlook_item(self.user, item.handle)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.restore_outlook_item(self.user, item.handle)

    async def make_stale(self, stack: Stack) -> None:
        await stack.control.expire_outlook_tokens(self.user)


class MailFolder(_Outlook):
    name, kind = "mail folder", "message"
    resource = "users/adele/mailFolders/inbox/messages"
    stale = MISSED

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.create_message(self.user, "inbox", subject=f"mail {next(_numbers)}")
        return Item(made["id"], made["id"])


class RichMailFolder(MailFolder):
    """The same folder with resource data: changes are told by notifications and read by delta passes."""

    name = "mail folder, rich"
    rich = True


class Mailbox(_Outlook):
    name, kind = "all mail", "message"
    resource = "users/adele/messages"

    async def create(self, stack: Stack) -> Item:
        folder = "archive" if next(_numbers) % 2 else "inbox"  # the walk reads every folder
        made = await stack.control.create_message(self.user, folder, subject=f"mail {next(_numbers)}")
        return Item(made["id"], made["id"])


class Events(_Outlook):
    name, kind = "events", "event"
    resource = "users/adele/events"
    stale = MISSED

    async def create(self, stack: Stack) -> Item:
        start = utcnow() + timedelta(days=2, hours=next(_numbers))
        made = await stack.control.create_event(self.user, start, start + timedelta(hours=1), subject="meeting")
        return Item(made["id"], made["id"])


class Contacts(_Outlook):
    name, kind = "contacts", "contact"
    resource = "users/adele/contacts"

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.create_contact(self.user, displayName=f"Contact {next(_numbers)}")
        return Item(made["id"], made["id"])


class _Directory(Driver):
    collection = ""
    change_type = "updated,deleted"
    stale = EXPIRED

    field = ""  # a property the source selects, so delta shows its change

    async def update(self, stack: Stack, item: Item) -> None:
        props = {self.field: f"v{next(_numbers)}"}
        await stack.control.update_directory_object(self.collection, item.handle, **props)

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.delete_directory_object(self.collection, item.handle)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.restore_directory_object(self.collection, item.handle)

    async def make_stale(self, stack: Stack) -> None:
        await stack.control.expire_directory_tokens(self.collection)


class Users(_Directory):
    name, kind, resource, collection = "users", "user", "users", "users"
    field = "jobTitle"

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.create_user(displayName=f"User {next(_numbers)}")
        return Item(made["id"], made["id"])


class Groups(_Directory):
    name, kind, resource, collection = "groups", "group", "groups", "groups"
    field = "description"

    async def create(self, stack: Stack) -> Item:
        # A member: groups delta lists every member in an enumeration and only changes in a round.
        member = await stack.control.create_user(displayName=f"Member {next(_numbers)}")
        made = await stack.control.create_group(displayName=f"Group {next(_numbers)}", members=[member["id"]])
        return Item(made["id"], made["id"])


class _Teams(Driver):
    kind = "chatMessage"
    rich = True
    notified_only = True
    where: dict[str, str] = {}

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.post_message(f"message {next(_numbers)}", **self.where)
        return Item(made["id"], made["id"])

    async def update(self, stack: Stack, item: Item) -> None:
        await stack.control.edit_message(item.handle, f"edited {next(_numbers)}", **self.where)

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.delete_message(item.handle, **self.where)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.undelete_message(item.handle, **self.where)


class TeamsChannel(_Teams):
    name = "Teams channel messages"
    team = "7d8c1f4e-0b1a-4c2d-9e3f-5a6b7c8d9e0f"
    channel = "19:2f3a9c0d4b5e6f708192a3b4c5d6e7f8@thread.tacv2"
    resource = f"teams/{team}/channels/{channel}/messages"
    where = {"team_id": team, "channel_id": channel}

    async def prepare(self, stack: Stack) -> None:
        await stack.control.create_team({"General": self.channel}, team_id=self.team)


class TeamsChat(_Teams):
    name = "Teams chat messages"
    chat = "19:kit-chat@thread.v2"
    resource = "chats/getAllMessages"
    where = {"chat_id": chat}

    async def prepare(self, stack: Stack) -> None:
        await stack.control.create_chat(self.chat)


class SharePointWebhook(Driver):
    """SharePoint's own list webhooks (SHAREPOINT_SUBSCRIPTIONS), read through GetChanges."""

    name, kind = "SharePoint REST", "listItem"
    stale = EXPIRED

    async def stack(self, stack_factory: Any, tmp_path: Path) -> Stack:
        from shared.app.worker import build_worker
        from shared.app.worker import sharepoint_desired as desired
        from tests.functional.test_sharepoint import PASSWORD, make_certificate

        certificate = make_certificate(tmp_path / "app-certificate.pfx")
        stack: Stack = await stack_factory(subscriptions="[]")
        site = await stack.control.sp_site("team")
        self.list_id = await stack.control.sp_list("team")
        await stack.control.sp_register_certificate(certificate.public_pem)
        env = {
            **stack.env,
            "SHAREPOINT_SUBSCRIPTIONS": json.dumps([{"site": site["url"], "list": self.list_id}]),
            "SHAREPOINT_CERTIFICATE": str(certificate.path),
            "SHAREPOINT_CERTIFICATE_PASSWORD": PASSWORD,
        }
        stack.others.append(stack.worker)
        stack.worker = await build_worker(env)
        stack.env = env
        assert stack.worker.sharepoint is not None
        report = await stack.worker.sharepoint.reconcile(desired(stack.worker.settings), utcnow())
        assert (report.created, report.failed) == (1, 0), report
        return stack

    async def record(self, stack: Stack) -> Any:
        assert stack.worker.sharepoint is not None
        [record] = await stack.worker.sharepoint._store.list()
        return record

    async def create(self, stack: Stack) -> Item:
        made = await stack.control.sp_add_item(self.list_id, Title=f"doc {next(_numbers)}")
        return Item(str(made["UniqueId"]).lower(), made["Id"])

    async def update(self, stack: Stack, item: Item) -> None:
        await stack.control.sp_update_item(self.list_id, item.handle, Title=f"edit {next(_numbers)}")

    async def delete(self, stack: Stack, item: Item) -> None:
        await stack.control.sp_delete_item(self.list_id, item.handle)

    async def restore(self, stack: Stack, item: Item) -> None:
        await stack.control.sp_restore_item(self.list_id, item.handle)

    async def make_stale(self, stack: Stack) -> None:
        await stack.control.sp_expire_tokens(self.list_id)


DRIVERS: tuple[type[Driver], ...] = (
    Drive,
    GraphList,
    MailFolder,
    RichMailFolder,
    Mailbox,
    Events,
    Contacts,
    Users,
    Groups,
    TeamsChannel,
    TeamsChat,
    SharePointWebhook,
)
