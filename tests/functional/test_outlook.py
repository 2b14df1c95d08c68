"""Outlook messages, events and contacts end to end: real Azurite, the Graph simulator, the pipeline in process."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.clock import utcnow
from shared.errors import StorageUnavailableError
from tests.functional.stacks import Stack

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())
USER = "adele"
ALL_CHANGES = "created,updated,deleted"


async def outlook_stack(stack_factory: Any, resource: str, *options: str, **env: str) -> tuple[Stack, dict[str, Any]]:
    """A stack subscribed to one Outlook resource of a fresh mailbox (created before the subscription)."""
    subscriptions = json.dumps([{"resource": resource, "changeType": ALL_CHANGES}])
    stack = await stack_factory(*options, subscriptions=subscriptions, env=env)
    mailbox = await stack.control.create_mailbox(USER)
    return stack, mailbox


async def subscribe(stack: Stack) -> None:
    """Create the subscription and run its first (silent) round."""
    report = await stack.reconcile()
    assert (report.created, report.failed) == (1, 0)
    record = await stack.record()
    await stack.pump(lambda: True)
    cursor = await stack.worker.reconciler._sync._cursors.load(_key(record.resource))
    assert cursor.state.delta_link is not None and not cursor.state.in_progress, "the first round completed"


def _key(resource: str) -> str:
    from shared.model.resources import resource_key

    return resource_key(resource)


async def subscription_on(stack: Stack, resource: str) -> dict[str, Any]:
    """The simulator's one subscription on ``resource``."""
    [sub] = [s for s in await stack.control.subscriptions() if s["resource"].strip("/") == resource]
    return dict(sub)


def changes(stack: Stack, item_id: str) -> list[str]:
    return [e["changeType"] for e in stack.for_item(item_id)]


async def test_folder_messages_start_silently_then_report_create_update_delete(stack_factory):
    stack, _ = await outlook_stack(stack_factory, f"users/{USER}/mailFolders/inbox/messages")
    before = await stack.control.create_message(USER, subject="before subscribing")
    await subscribe(stack)
    assert stack.events == [], "the first round records the position and reports nothing"

    message = await stack.control.create_message(USER, subject="hello")
    await stack.pump(lambda: changes(stack, message["id"]) == ["created"])
    await stack.control.update_outlook_item(USER, message["id"], isRead=True)
    await stack.pump(lambda: changes(stack, message["id"]) == ["created", "updated"])
    await stack.control.delete_outlook_item(USER, message["id"])
    await stack.pump(lambda: changes(stack, message["id"]) == ["created", "updated", "deleted"])

    events = stack.for_item(message["id"])
    assert {e["kind"] for e in events} == {"message"}
    assert len({e["id"] for e in events}) == 3 and not any(e["resync"] for e in events)
    assert events[1]["item"]["isRead"] is True and events[2]["item"] is None
    assert events[0]["containerId"] == USER
    for event in events:
        jsonschema.validate(event, SCHEMA)
    assert stack.for_item(before["id"]) == []


async def test_all_folder_messages_walk_every_folder_and_a_move_is_an_update(stack_factory):
    stack, mailbox = await outlook_stack(stack_factory, f"users/{USER}/messages", "--retry-base-seconds", "0.2")
    projects = await stack.control.create_mail_folder(USER, "Projects", mailbox["mailFolders"]["inbox"])
    nested = await stack.control.create_mail_folder(USER, "Alpha", projects["id"])
    old = await stack.control.create_message(USER, nested["id"], subject="old")
    await subscribe(stack)
    assert stack.events == []

    deep = await stack.control.create_message(USER, nested["id"], subject="deep")
    sent = await stack.control.create_message(USER, "sentitems", subject="sent")
    await stack.pump(lambda: changes(stack, deep["id"]) == ["created"] and changes(stack, sent["id"]) == ["created"])
    later = await stack.control.create_mail_folder(USER, "Later")
    fresh = await stack.control.create_message(USER, later["id"], subject="in a folder made after subscribing")
    await stack.pump(lambda: changes(stack, fresh["id"]) == ["created"])

    await stack.control.move_outlook_item(USER, old["id"], "archive")
    await stack.pump(lambda: changes(stack, old["id"]) == ["updated"])
    await stack.control.delete_outlook_item(USER, deep["id"])
    await stack.pump(lambda: changes(stack, deep["id"]) == ["created", "deleted"])
    # One more round: the move never turns into a deletion, whatever the order the folders are read in.
    await stack.control.update_outlook_item(USER, sent["id"], isRead=True)
    await stack.pump(lambda: changes(stack, sent["id"]) == ["created", "updated"])
    assert changes(stack, old["id"]) == ["updated"]
    moved = stack.for_item(old["id"])[0]["item"]
    assert moved["parentFolderId"] == mailbox["mailFolders"]["archive"]
    assert {e["kind"] for e in stack.events} == {"message"}


async def test_events_inside_the_window_are_reported_and_outside_ignored(stack_factory, caplog):
    stack, _ = await outlook_stack(stack_factory, f"users/{USER}/events", CALENDAR_WINDOW_DAYS_AHEAD="30")
    await subscribe(stack)
    now = utcnow()
    caplog.set_level(logging.INFO, logger="shared.sync.synchronizer")
    outside = await stack.control.create_event(USER, now + timedelta(days=60), now + timedelta(days=60, hours=1))
    inside = await stack.control.create_event(USER, now + timedelta(days=1), now + timedelta(days=1, hours=1))
    await stack.pump(lambda: changes(stack, inside["id"]) == ["created"])
    await stack.control.update_outlook_item(USER, inside["id"], subject="moved to the afternoon")
    await stack.pump(lambda: changes(stack, inside["id"]) == ["created", "updated"])
    await stack.control.delete_outlook_item(USER, inside["id"])
    await stack.pump(lambda: changes(stack, inside["id"]) == ["created", "updated", "deleted"])

    assert stack.for_item(outside["id"]) == [], "an event outside the window is ignored"
    assert "outside the window" in caplog.text
    assert {e["kind"] for e in stack.events} == {"event"}
    for event in stack.events:
        jsonschema.validate(event, SCHEMA)


async def test_default_contacts_report_create_update_delete(stack_factory):
    stack, _ = await outlook_stack(stack_factory, f"users/{USER}/contacts")
    await stack.control.create_contact(USER, displayName="Known before")
    await subscribe(stack)
    assert stack.events == []
    contact = await stack.control.create_contact(USER, displayName="Megan")
    await stack.pump(lambda: changes(stack, contact["id"]) == ["created"])
    await stack.control.update_outlook_item(USER, contact["id"], displayName="Megan Bowen")
    await stack.pump(lambda: changes(stack, contact["id"]) == ["created", "updated"])
    await stack.control.delete_outlook_item(USER, contact["id"])
    await stack.pump(lambda: changes(stack, contact["id"]) == ["created", "updated", "deleted"])
    assert {e["kind"] for e in stack.events} == {"contact"}
    for event in stack.events:
        jsonschema.validate(event, SCHEMA)


async def test_missed_lifecycle_event_resyncs_what_notifications_lost(stack_factory):
    stack, _ = await outlook_stack(stack_factory, f"users/{USER}/mailFolders/inbox/messages")
    kept = await stack.control.create_message(USER, subject="will be deleted unnoticed")
    await subscribe(stack)
    await stack.control.delivery(drop=True)  # Graph drops these notifications: only the lifecycle event arrives
    lost = await stack.control.create_message(USER, subject="notification lost")
    await stack.control.delete_outlook_item(USER, kept["id"])
    await stack.control.delivery(drop=False)
    sub = await subscription_on(stack, f"users/{USER}/mailFolders/inbox/messages")
    await stack.control.lifecycle(sub["id"], "missed")
    await stack.pump(lambda: changes(stack, lost["id"]) == ["created"] and changes(stack, kept["id"]) == ["deleted"])
    assert all(e["resync"] for e in stack.events)


async def test_subscription_removed_recreates_then_resyncs(stack_factory):
    resource = f"users/{USER}/contacts"
    stack, _ = await outlook_stack(stack_factory, resource)
    await subscribe(stack)
    old = await subscription_on(stack, resource)
    await stack.control.lifecycle(old["id"], "subscriptionRemoved")
    # Made while no subscription existed: no notification will ever name it.
    unnoticed = await stack.control.create_contact(USER, displayName="Made while unsubscribed")
    await stack.pump(lambda: changes(stack, unnoticed["id"]) == ["created"])
    new = await subscription_on(stack, resource)
    assert new["id"] != old["id"]
    assert stack.for_item(unnoticed["id"])[0]["resync"] is True
    later = await stack.control.create_contact(USER, displayName="After re-creating")
    await stack.pump(lambda: changes(stack, later["id"]) == ["created"])


async def test_stale_delta_token_resyncs(stack_factory):
    stack, _ = await outlook_stack(stack_factory, f"users/{USER}/messages")
    await subscribe(stack)
    await stack.control.expire_outlook_tokens(USER)
    message = await stack.control.create_message(USER, subject="after the tokens expired")
    await stack.pump(lambda: changes(stack, message["id"]) == ["created"])
    [event] = stack.for_item(message["id"])
    assert event["resync"] is True


async def test_a_mailbox_no_longer_watched_leaves_no_folder_rows(stack_factory):
    resource = f"users/{USER}/messages"
    stack, _ = await outlook_stack(stack_factory, resource)
    await subscribe(stack)
    state = stack.worker.reconciler._sync._source_state.view(_key(resource))
    assert await state.after("folder:", None) is not None, "the walk keeps an entry per folder"
    report = await stack.worker.reconciler.reconcile((), utcnow())
    assert report.deleted == 1
    assert await state.after("folder:", None) is None


async def read_round(source: Any, resource: str, link: str | None, store: Any = None) -> tuple[list[Any], int, str]:
    """Every change of one delta round from ``link``, the number of pages, and the round's final link.

    With ``store`` (a SourceStateStore), each page's state is committed as the synchronizer would.
    """
    found: list[Any] = []
    for pages in range(1, 100):
        if store is None:
            page = await source.page(resource, link)
        else:
            page = await source.page(resource, link, store.view(_key(resource)))
            await store.apply(_key(resource), page.state)
        found += page.changes
        if page.delta_link is not None:
            return found, pages, page.delta_link
        link = page.next_link
    raise AssertionError("the round never ended")


async def test_a_folder_round_pages_through_next_links_and_reports_removals_next_round(stack_factory):
    from shared.sources.outlook import FolderMessageSource

    resource = f"users/{USER}/mailFolders/inbox/messages"
    stack, _ = await outlook_stack(stack_factory, resource)
    ids = [(await stack.control.create_message(USER, subject=f"m{n}"))["id"] for n in range(5)]
    source = FolderMessageSource(stack.worker.reconciler._graph, page_size=2)

    first, pages, final = await read_round(source, resource, None)
    assert pages == 3 and sorted(c.item_id for c in first) == sorted(ids)

    await stack.control.delete_outlook_item(USER, ids[0])
    await stack.control.update_outlook_item(USER, ids[1], isRead=True)
    second, _, _ = await read_round(source, resource, final)
    by_id = {c.item_id: c for c in second}
    assert set(by_id) == {ids[0], ids[1]}
    assert by_id[ids[0]].version is None
    assert by_id[ids[1]].version != next(c.version for c in first if c.item_id == ids[1])


async def test_the_all_folder_walk_reads_every_folder_page_by_page(stack_factory):
    from shared.sources.outlook import MailboxMessageSource

    resource = f"users/{USER}/messages"
    stack, _ = await outlook_stack(stack_factory, resource)
    parent = await stack.control.create_mail_folder(USER, "Parent")
    child = await stack.control.create_mail_folder(USER, "Child", parent["id"])
    ids = set()
    for folder in ("inbox", "archive", parent["id"], child["id"]):
        for n in range(3):
            ids.add((await stack.control.create_message(USER, folder, subject=f"{folder} {n}"))["id"])
    store = stack.worker.reconciler._sync._source_state
    source = MailboxMessageSource(stack.worker.reconciler._graph, page_size=2)

    first, pages, final = await read_round(source, resource, None, store)
    assert {c.item_id for c in first} == ids and len(first) == len(ids)
    assert pages >= 8, "two pages in each folder holding messages"

    moved = next(iter(sorted(ids)))
    await stack.control.move_outlook_item(USER, moved, child["id"])
    second, _, _ = await read_round(source, resource, final, store)
    assert [(c.item_id, c.version is None) for c in second] == [(moved, False)], "a move is no deletion"


class FailingSend:
    """The events outlet, with its next send of events failing as a storage outage would."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.failed = inner, 0

    async def send_all(self, texts: Any) -> None:
        texts = list(texts)
        if texts and not self.failed:
            self.failed += 1
            raise StorageUnavailableError("queue write failed")
        await self.inner.send_all(texts)

    async def send(self, text: str, **options: Any) -> None:
        await self.inner.send(text, **options)


async def test_a_failed_event_write_in_the_all_folder_walk_loses_no_message(stack_factory):
    # The folder's round fits one page: its new deltaLink must not be saved before its events are.
    resource = f"users/{USER}/messages"
    stack, _ = await outlook_stack(stack_factory, resource)
    await subscribe(stack)
    record = await stack.record()
    message = await stack.control.create_message(USER, subject="must not be lost")
    sync = stack.worker.reconciler._sync
    outlet = sync._changes
    sync._changes = FailingSend(outlet)
    with pytest.raises(StorageUnavailableError):
        await sync.sync(record, utcnow())
    assert sync._changes.failed == 1

    await sync.sync(record, utcnow())  # the host's retry
    await stack.pump(lambda: changes(stack, message["id"]) == ["created"])
    assert changes(stack, message["id"]) == ["created"]


async def rich_outlook_stack(stack_factory: Any, tmp_path: Path, resource: str) -> Stack:
    """A stack subscribed with resource data (rich notifications) to one Outlook resource, its first round done."""
    from devtools.graphsim.rich import make_certificate

    pfx = tmp_path / "outlook.pfx"
    pfx.write_bytes(make_certificate("graph-outlook-tests").pfx("pfx-password"))
    entries = [{"resource": resource, "changeType": ALL_CHANGES, "includeResourceData": True}]
    stack = await stack_factory(
        subscriptions=json.dumps(entries),
        env={
            "NOTIFICATION_CERTIFICATE": str(pfx),
            "NOTIFICATION_CERTIFICATE_PASSWORD": "pfx-password",
            "NOTIFICATION_CERTIFICATE_ID": "outlook-cert-1",
        },
    )
    await stack.control.create_mailbox(USER)
    await subscribe(stack)
    return stack


async def settle(stack: Stack) -> None:
    """Let the simulator deliver what it holds, then process every stored notification."""
    deadline = utcnow() + timedelta(seconds=10)
    while utcnow() < deadline and (await stack.control.stats())["delivery"]["pending"]:
        await stack.pump(lambda: True)
    from shared.model.names import NOTIFICATIONS_QUEUE
    from shared.stores.clients import queue_client

    async with queue_client(stack.connection, NOTIFICATIONS_QUEUE) as client:
        while (await client.get_queue_properties()).approximate_message_count:
            await stack.pump(lambda: True)


async def test_a_rich_outlook_change_seen_first_by_its_notification_keeps_its_id_in_the_next_pass(
    stack_factory, tmp_path
):
    resource = f"users/{USER}/mailFolders/inbox/messages"
    stack = await rich_outlook_stack(stack_factory, tmp_path, resource)
    message = await stack.control.create_message(USER, subject="told by its notification")
    await stack.pump(lambda: changes(stack, message["id"]) == ["created"])
    [told] = stack.for_item(message["id"])
    assert told["item"]["subject"] == "told by its notification", "the event carries the decrypted message"

    await stack.request_sync(await stack.record())  # the sweep's delta pass reads the same change
    await settle(stack)
    assert [e["id"] for e in stack.for_item(message["id"])] == [told["id"]], "one change, one event"


async def test_a_rich_outlook_change_seen_first_by_a_pass_keeps_its_id_when_its_notification_comes(
    stack_factory, tmp_path
):
    resource = f"users/{USER}/mailFolders/inbox/messages"
    stack = await rich_outlook_stack(stack_factory, tmp_path, resource)
    await stack.control.delivery(paused=True)
    message = await stack.control.create_message(USER, subject="read by a pass first")
    await stack.request_sync(await stack.record())
    await stack.pump(lambda: changes(stack, message["id"]) == ["created"])
    [seen] = stack.for_item(message["id"])

    await stack.control.delivery(paused=False)
    await settle(stack)
    assert (await stack.control.stats())["delivery"]["successes"] >= 1, "the notification was delivered"
    assert [e["id"] for e in stack.for_item(message["id"])] == [seen["id"]], "one change, one event"


async def test_outlook_subscriptions_ask_for_immutable_ids_and_others_do_not(stack_factory):
    # So a rich notification names an item by the id its delta pages use (outlook-immutable-id.md).
    entries = [
        {"resource": f"users/{USER}/messages", "changeType": ALL_CHANGES},
        {"resource": "drives/b!pipeline-drive/root", "changeType": "updated"},
    ]
    stack = await stack_factory(subscriptions=json.dumps(entries))
    await stack.control.create_mailbox(USER)
    report = await stack.reconcile()
    assert (report.created, report.failed) == (2, 0)
    asked = {s["resource"].strip("/"): s["immutableIds"] for s in await stack.control.subscriptions()}
    assert asked == {f"users/{USER}/messages": True, "drives/b!pipeline-drive/root": False}
