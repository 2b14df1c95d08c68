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
from shared.settings import NOTIFICATIONS_QUEUE
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
