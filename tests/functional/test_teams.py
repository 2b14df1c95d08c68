"""Teams channel messages through the simulator: rich notifications checked, decrypted and turned into events.

The simulator signs validation tokens with a key published in its authority's JWKS and
encrypts each message with the certificate the app subscribed with; the app checks the
tokens on the HTTP path and decrypts in the processor, with no Graph call for the item.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.graphsim.rich import make_certificate
from devtools.messages import receive_json
from shared.app.worker import build_worker
from shared.model.names import NOTIFICATIONS_QUEUE
from tests.functional.stacks import Stack

CERTIFICATE_ID = "teams-cert-1"
TEAM = "7d8c1f4e-0b1a-4c2d-9e3f-5a6b7c8d9e0f"
CHANNEL = "19:2f3a9c0d4b5e6f708192a3b4c5d6e7f8@thread.tacv2"
WHERE = {"team_id": TEAM, "channel_id": CHANNEL}
RESOURCE = f"teams/{TEAM}/channels/{CHANNEL}/messages"


@pytest.fixture
def certificate_file(tmp_path: Path) -> Path:
    """A PFX with the certificate and its key, made now (no key is checked in)."""
    path = tmp_path / "notifications.pfx"
    path.write_bytes(make_certificate("graph-teams-tests").pfx("pfx-password"))
    return path


async def subscribed(stack_factory: Any, certificate_file: Path) -> Stack:
    """A stack subscribed by reconcile to a channel's messages with resource data; the creation's sync done."""
    entries = [{"resource": RESOURCE, "changeType": "created,updated,deleted", "includeResourceData": True}]
    settings = {
        "NOTIFICATION_CERTIFICATE": str(certificate_file),
        "NOTIFICATION_CERTIFICATE_PASSWORD": "pfx-password",
        "NOTIFICATION_CERTIFICATE_ID": CERTIFICATE_ID,
    }
    stack: Stack = await stack_factory(subscriptions=json.dumps(entries), env=settings)
    await stack.control.create_team({"General": CHANNEL}, team_id=TEAM)
    report = await stack.reconcile()
    assert (report.created, report.failed) == (1, 0)
    await stack.pump(lambda: True)  # the sync asked for at creation reads nothing: changes come with notifications
    return stack


async def delivered(stack: Stack, batches: int, within: float = 10.0) -> None:
    """Wait until the simulator has had ``batches`` deliveries answered 2xx and has nothing pending."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        delivery = (await stack.control.stats())["delivery"]
        if delivery["successes"] >= batches and delivery["pending"] == 0:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{batches} deliveries not answered in {within} s")


def kinds(stack: Stack, item_id: str) -> list[str]:
    return [e["changeType"] for e in stack.for_item(item_id)]


async def test_a_posted_edited_and_deleted_channel_message_becomes_three_events(
    stack_factory: Any, certificate_file: Path
) -> None:
    stack = await subscribed(stack_factory, certificate_file)
    [sub] = await stack.control.subscriptions()
    assert sub["includeResourceData"] is True and sub["encryptionCertificateId"] == CERTIFICATE_ID

    posted = await stack.control.post_message("quarterly numbers attached", **WHERE)
    await stack.pump(lambda: kinds(stack, posted["id"]) == ["created"])
    [created] = stack.for_item(posted["id"])
    assert created["kind"] == "chatMessage"
    assert created["containerId"] == f"{TEAM}/{CHANNEL}"
    assert {k: v for k, v in created["item"].items() if k != "@odata.context"} == posted

    edited = await stack.control.edit_message(posted["id"], "quarterly numbers attached (v2)", **WHERE)
    await stack.pump(lambda: kinds(stack, posted["id"]) == ["created", "updated"])
    assert stack.for_item(posted["id"])[1]["item"]["body"]["content"] == edited["body"]["content"]

    await stack.control.delete_message(posted["id"], **WHERE)
    await stack.pump(lambda: kinds(stack, posted["id"]) == ["created", "updated", "deleted"])
    deleted = stack.for_item(posted["id"])[2]
    # Graph's deletion carries no encryptedContent: the event comes from resourceData, for the same channel.
    assert deleted["item"] is None and deleted["containerId"] == f"{TEAM}/{CHANNEL}"
    assert len({e["id"] for e in stack.events}) == 3


@pytest.mark.parametrize("fault", ["forged", "other-tenant"])
async def test_a_batch_with_a_bad_token_is_answered_202_and_nothing_is_stored(
    stack_factory: Any, certificate_file: Path, fault: str
) -> None:
    # Expired and wrong-audience tokens take the same path; tests/unit/test_security_tokens.py has each reason.
    # other-tenant: signed with the authority's published key, for this app, but minted for another tenant.
    stack = await subscribed(stack_factory, certificate_file)
    before = (await stack.control.stats())["delivery"]["successes"]
    await stack.control.spoil_rich(fault)
    refused = await stack.control.post_message("not to be stored", **WHERE)
    await delivered(stack, before + 1)  # answered 2xx: Graph does not retry it
    assert (await stack.control.stats())["delivery"]["failures"] == {}
    assert await receive_json(stack.connection, NOTIFICATIONS_QUEUE) == []

    accepted = await stack.control.post_message("stored", **WHERE)
    await stack.pump(lambda: kinds(stack, accepted["id"]) == ["created"])
    assert stack.for_item(refused["id"]) == []


async def test_tampered_data_gives_no_event_while_v2_tokens_are_accepted(
    stack_factory: Any, certificate_file: Path
) -> None:
    stack = await subscribed(stack_factory, certificate_file)
    before = (await stack.control.stats())["delivery"]["successes"]
    await stack.control.spoil_rich("tampered", token_version=2)
    tampered = await stack.control.post_message("tampered in transit", **WHERE)
    await delivered(stack, before + 1)  # its own batch: the fault spoils one batch
    intact = await stack.control.post_message("intact", **WHERE)
    await stack.pump(lambda: kinds(stack, intact["id"]) == ["created"])
    assert stack.for_item(tampered["id"]) == []
    assert (await stack.control.call("GET", "/rich"))["faults"] == []


# --- a notification can race its own subscription ---------------------------------------------------


def channel_entry() -> str:
    return json.dumps([{"resource": RESOURCE, "changeType": "created,updated,deleted", "includeResourceData": True}])


def certificate_settings(path: Path, certificate_id: str = CERTIFICATE_ID) -> dict[str, str]:
    return {
        "NOTIFICATION_CERTIFICATE": str(path),
        "NOTIFICATION_CERTIFICATE_PASSWORD": "pfx-password",
        "NOTIFICATION_CERTIFICATE_ID": certificate_id,
    }


async def answered(stack: Stack, deliveries: int, within: float = 10.0) -> dict[str, Any]:
    """Wait until the simulator has had an answer (2xx or not) to ``deliveries`` POSTs; its delivery stats."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        delivery: dict[str, Any] = (await stack.control.stats())["delivery"]
        if delivery["successes"] + sum(delivery["failures"].values()) >= deliveries:
            return delivery
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{deliveries} deliveries not answered in {within} s")


async def test_a_notification_sent_before_the_new_id_is_recorded_is_answered_503_then_stored(
    stack_factory: Any, certificate_file: Path
) -> None:
    stack: Stack = await stack_factory(subscriptions=channel_entry(), env=certificate_settings(certificate_file))
    await stack.control.create_team({"General": CHANNEL}, team_id=TEAM)
    graph = stack.worker.reconciler._graph
    create = graph.create_subscription
    sent: list[dict[str, Any]] = []

    async def notified_at_once(*args: Any, **kwargs: Any) -> Any:
        made = await create(*args, **kwargs)
        # Graph notifies as soon as it has answered: before the app has recorded the id it gave.
        sent.append(await stack.control.post_message("posted in the window", **WHERE))
        first = await answered(stack, 1)
        assert first["successes"] == 0  # not a 2xx: nothing was stored, so Graph must retry
        return made

    graph.create_subscription = notified_at_once
    report = await stack.reconcile()

    assert (report.created, report.failed) == (1, 0)
    await stack.pump(lambda: kinds(stack, sent[0]["id"]) == ["created"])
    delivery = (await stack.control.stats())["delivery"]
    assert delivery["failures"] == {"503": 1} and delivery["itemsDropped"] == 0


async def test_a_notification_sent_before_the_record_names_the_new_id_is_stored_at_once(
    stack_factory: Any, certificate_file: Path
) -> None:
    stack: Stack = await stack_factory(subscriptions=channel_entry(), env=certificate_settings(certificate_file))
    await stack.control.create_team({"General": CHANNEL}, team_id=TEAM)
    store = stack.worker.reconciler._store
    save = store.save
    sent: list[dict[str, Any]] = []

    async def notified_before_the_save(record: Any) -> None:
        if record.status == "active" and not sent:
            sent.append(await stack.control.post_message("posted before the save", **WHERE))
            delivery = await answered(stack, 1)
            assert delivery == delivery | {"successes": 1, "failures": {}}
            # Taken from the queue and turned into its event while the record still names no id.
            await stack.pump(lambda: kinds(stack, sent[0]["id"]) == ["created"])
        await save(record)

    store.save = notified_before_the_save
    report = await stack.reconcile()

    assert (report.created, report.failed) == (1, 0)
    assert len(stack.for_item(sent[0]["id"])) == 1


# --- certificate rotation ---------------------------------------------------------------------------


async def test_a_new_certificate_moves_every_rich_subscription_in_one_tick_within_graphs_write_budget(
    stack_factory: Any, tmp_path: Path
) -> None:
    from shared.reconcile.budget import WriteBudget

    old, new = tmp_path / "old.pfx", tmp_path / "new.pfx"
    old.write_bytes(make_certificate("graph-teams-old").pfx("pfx-password"))
    new.write_bytes(make_certificate("graph-teams-new").pfx("pfx-password"))
    channels = {f"c{n}": f"19:rotation{n}@thread.tacv2" for n in range(4)}
    entries = [
        {"resource": f"teams/{TEAM}/channels/{c}/messages", "changeType": "created", "includeResourceData": True}
        for c in channels.values()
    ]
    # Graph answers 429 past 2 writes a second here; the reconciler's budget must keep under that.
    sim_options = ("--write-limit", "2", "--write-window-seconds", "1")
    stack: Stack = await stack_factory(
        *sim_options, subscriptions=json.dumps(entries), env=certificate_settings(old, "cert-old")
    )
    await stack.control.create_team(channels, team_id=TEAM)
    # One budget for the instance, whichever settings it was restarted with.
    budget = stack.worker.reconciler._budget = WriteBudget(2, 1.0)
    assert (await stack.reconcile()).created == 4
    await stack.pump(lambda: True)
    where = {"team_id": TEAM, "channel_id": channels["c0"]}
    before = await stack.control.post_message("encrypted for the old certificate", **where)

    rotated = {
        **certificate_settings(new, "cert-new"),
        "NOTIFICATION_CERTIFICATE_PREVIOUS": str(old),
        "NOTIFICATION_CERTIFICATE_PREVIOUS_PASSWORD": "pfx-password",
        "NOTIFICATION_CERTIFICATE_PREVIOUS_ID": "cert-old",
    }
    stack.cleanup_later(stack.worker)
    worker = stack.worker = await build_worker({**stack.env, **rotated})
    worker.reconciler._budget = budget
    writes = (await stack.control.stats())["subscriptionWrites"]
    # Until every subscription moved, both certificates decrypt.
    await stack.pump(lambda: kinds(stack, before["id"]) == ["created"])

    report = await stack.reconcile()

    assert (report.renewed, report.failed) == (4, 0), report
    stats = await stack.control.stats()
    assert stats["throttled"] == 0 and stats["subscriptionWrites"] == writes + 4  # one PATCH each
    assert {s["encryptionCertificateId"] for s in await stack.control.subscriptions()} == {"cert-new"}
    records = await stack.store.list()
    assert {(r.certificate_id, r.status) for r in records} == {("cert-new", "active")}
    assert (await stack.reconcile()).renewed == 0  # moved: the next tick leaves them alone

    # The previous certificate can go now: what Graph sends is encrypted for the new one.
    stack.cleanup_later(stack.worker)
    stack.worker = await build_worker({**stack.env, **certificate_settings(new, "cert-new")})
    after = await stack.control.post_message("encrypted for the new certificate", **where)
    await stack.pump(lambda: kinds(stack, after["id"]) == ["created"])
    assert stack.for_item(after["id"])[0]["item"]["body"]["content"] == "encrypted for the new certificate"


# --- query options and the tenant-wide resources --------------------------------------------------------


async def test_the_licensing_model_reaches_graph_in_the_resource_and_messages_still_arrive(
    stack_factory: Any, certificate_file: Path
) -> None:
    entries = [
        {"resource": "chats/getAllMessages?model=B", "changeType": "created", "includeResourceData": True},
        {"resource": "teams/getAllMessages?model=A", "changeType": "created", "includeResourceData": True},
    ]
    stack: Stack = await stack_factory(subscriptions=json.dumps(entries), env=certificate_settings(certificate_file))
    await stack.control.create_team({"General": CHANNEL}, team_id=TEAM)
    chat = await stack.control.create_chat()

    report = await stack.reconcile()

    assert (report.created, report.failed) == (2, 0)
    made = {s["resource"]: s for s in await stack.control.subscriptions()}
    assert set(made) == {"chats/getAllMessages?model=B", "teams/getAllMessages?model=A"}
    # Past an hour Graph wants a lifecycle URL for Teams: the app always sends one.
    assert {s["lifecycleNotificationUrl"] for s in made.values()} == {stack.env["LIFECYCLE_NOTIFICATION_URL"]}
    records = {r.resource: r for r in await stack.store.list()}
    assert {(path, r.query) for path, r in records.items()} == {
        ("chats/getAllMessages", "model=B"),
        ("teams/getAllMessages", "model=A"),
    }
    in_chat = await stack.control.post_message("in a chat", chat_id=chat)
    in_channel = await stack.control.post_message("in a channel", **WHERE)
    await stack.pump(lambda: kinds(stack, in_chat["id"]) == kinds(stack, in_channel["id"]) == ["created"])
    assert stack.for_item(in_channel["id"])[0]["containerId"] == f"{TEAM}/{CHANNEL}"
    assert (await stack.reconcile()).created == 0  # listed with its query, each is recognised as its entry
