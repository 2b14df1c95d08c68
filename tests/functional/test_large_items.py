"""Notifications too large for a queue message: stored in a blob, queued as a claim, redeemed by the trigger.

One rich item over 48 KiB of JSON (a long Teams message) used to get 413 for its whole batch,
and was never stored. Against a real Azurite, and through the simulator end to end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from devtools.azurite import Azurite, free_port
from devtools.graphsim.rich import SampleCertificate, ValidationTokenSigner, encrypt_content, make_certificate
from devtools.messages import receive_json
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import SecretBook
from shared.model.names import NOTIFICATIONS_QUEUE
from shared.model.notifications import MAX_MESSAGE_JSON_BYTES, ClaimedItem, Envelope
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.queues.claims import CLAIM, CONTAINER, ClaimStore, redeem
from shared.queues.message_queue import MessageQueue
from shared.security.certificates import CertificateBook, parse_certificate
from shared.security.resource_data import ResourceDataReader
from shared.security.tokens import TokenGate
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore
from tests.functional.test_rich_notifications import (
    CLIENT_ID,
    MESSAGE,
    RESOURCE,
    SECRET,
    SUBSCRIPTION_ID,
    TENANT,
    Authority,
)
from tests.functional.test_teams import WHERE, kinds, subscribed

# A Teams message with a long HTML body: its notification is 61 KiB of JSON once encrypted and base64-encoded,
# while its event (the decrypted message, 45 KiB) still fits a queue message with the item in it.
LONG_MESSAGE: dict[str, Any] = {**MESSAGE, "body": {"contentType": "html", "content": "<p>quarterly</p>" * 2870}}


@pytest.fixture(scope="module")
def signer() -> ValidationTokenSigner:
    return ValidationTokenSigner()


@pytest.fixture(scope="module")
def certificate() -> SampleCertificate:
    return make_certificate()


def blob_container(connection: str) -> Callable[[], ContainerClient]:
    return lambda: ContainerClient.from_connection_string(connection, CONTAINER)


@pytest.fixture
async def rig(
    azurite: Azurite, unique_name: Callable[[str], str], signer: ValidationTokenSigner
) -> AsyncIterator[Callable[..., Any]]:
    """Factory: an Ingest with a token gate and a claim store (Azurite's, or one that cannot be reached)."""
    async with AsyncExitStack() as clients:

        async def make(blobs: str = azurite.connection_string) -> tuple[Ingest, MessageQueue, str]:
            table, queue = unique_name("subs"), unique_name("notes")
            store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
            await store.setup()
            key = f"{RESOURCE.replace('/', ':')}|created"
            await store.save(
                SubscriptionRecord(key, RESOURCE, "created", SECRET, ACTIVE, datetime.now(UTC), SUBSCRIPTION_ID)
            )
            claims = ClaimStore(blob_container(blobs))
            clients.push_async_callback(claims.close)
            target = await clients.enter_async_context(queue_client(azurite.connection_string, queue, retry_total=0))
            messages = MessageQueue(target, claims=claims)
            gate = TokenGate(CLIENT_ID, TENANT, "https://login.example.test", fetch=Authority(signer).fetch)
            return Ingest(SecretBook(store.secret), messages, tokens=gate), messages, queue

        yield make


def rich_item(certificate: SampleCertificate, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "subscriptionId": SUBSCRIPTION_ID,
        "changeType": "created",
        "resource": RESOURCE,
        "clientState": SECRET,
        "tenantId": TENANT,
        "resourceData": {"id": message["id"], "@odata.type": "#Microsoft.Graph.chatMessage"},
        "encryptedContent": encrypt_content(message, certificate.public_base64, "cert-1"),
    }


def rich_batch(signer: ValidationTokenSigner, *items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items), "validationTokens": [signer.token(TENANT, CLIENT_ID)]}).encode()


async def test_a_large_rich_item_is_stored_as_a_blob_and_its_claim_redeemed_into_an_event(
    rig: Callable[..., Any],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
) -> None:
    ingest, messages, queue = await rig()
    large, small = rich_item(certificate, LONG_MESSAGE), rich_item(certificate, MESSAGE)
    assert len(json.dumps(large)) > 60 * 1024 > MAX_MESSAGE_JSON_BYTES

    assert (await ingest.accept(rich_batch(signer, large, small))).status == 202

    [stored] = await receive_json(azurite.connection_string, queue)
    claim, inline = stored["value"]
    assert set(claim) == {"subscriptionId", CLAIM} and inline["encryptedContent"] == small["encryptedContent"]
    async with blob_container(azurite.connection_string)() as container:
        kept = json.loads(await (await container.download_blob(claim[CLAIM]["blob"])).readall())
    assert kept == {k: v for k, v in large.items() if k != "clientState"}

    # The queue trigger's side: redeem the claim, then decrypt (the stack test below goes on to the event).
    envelope = await redeem(Envelope.from_json(json.dumps(stored)), messages.claims)
    assert isinstance(envelope.items[0], ClaimedItem) and envelope.items[0] == kept
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    reader = ResourceDataReader(book, lambda: datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC))
    reading = reader.read(SUBSCRIPTION_ID, envelope.items)
    assert [resource for _, resource in reading.told] == [LONG_MESSAGE, MESSAGE]
    # Written again (deferred, or kept aside in poison), the envelope carries the claim, not the item.
    assert json.loads(envelope.to_json())["value"] == stored["value"]


async def test_a_blob_that_cannot_be_written_answers_503_and_stores_nothing(
    rig: Callable[..., Any], azurite: Azurite, signer: ValidationTokenSigner, certificate: SampleCertificate
) -> None:
    down = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )
    ingest, _, queue = await rig(down)

    reply = await ingest.accept(rich_batch(signer, rich_item(certificate, LONG_MESSAGE)))

    assert reply.status == 503  # Graph retries the batch
    assert await receive_json(azurite.connection_string, queue) == []


# --- end to end: the simulator posts a long channel message -----------------------------------------


@pytest.fixture
def certificate_file(tmp_path: Path) -> Path:
    path = tmp_path / "notifications.pfx"
    path.write_bytes(make_certificate("graph-large-items").pfx("pfx-password"))
    return path


async def test_a_long_channel_message_goes_from_graph_to_an_event_through_a_blob(
    stack_factory: Any, certificate_file: Path
) -> None:
    stack = await subscribed(stack_factory, certificate_file)

    posted = await stack.control.post_message(LONG_MESSAGE["body"]["content"], **WHERE)
    await stack.pump(lambda: kinds(stack, posted["id"]) == ["created"])

    [event] = stack.for_item(posted["id"])
    assert event["item"]["body"]["content"] == LONG_MESSAGE["body"]["content"]
    assert (await stack.control.stats())["delivery"]["failures"] == {}  # accepted at the first attempt
    async with blob_container(stack.connection)() as container:
        [blob] = [blob async for blob in container.list_blobs()]
    assert blob.size > 60 * 1024


async def test_a_claim_whose_blob_is_gone_goes_to_poison_at_once(stack_factory: Any) -> None:
    stack = await stack_factory()
    record = await stack.reconcile()
    assert record.created == 1
    [sub] = await stack.store.list()
    claim = {"subscriptionId": sub.subscription_id, CLAIM: {"blob": f"2026/11/22/{'0' * 32}.json"}}

    summary = await stack.worker.processor.handle(Envelope("notifications", datetime.now(UTC), [claim]).to_json())

    assert summary.poisoned == 1
    [poisoned] = await receive_json(stack.connection, f"{NOTIFICATIONS_QUEUE}-poison")
    assert poisoned["value"] == [claim]  # as stored: replayable once the blob is back
