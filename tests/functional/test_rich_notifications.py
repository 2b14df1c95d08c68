"""Rich notifications against a real Azurite: tokens checked before storing, resource data decrypted into events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.azurite import Azurite
from devtools.graphsim.rich import (
    SampleCertificate,
    ValidationTokenSigner,
    encrypt_content,
    forge,
    make_certificate,
    tamper,
)
from devtools.messages import receive_json
from shared import refusals
from shared.clock import utcnow
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import SecretBook
from shared.model.notifications import Envelope
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.queues.message_queue import MessageQueue
from shared.security.certificates import CertificateBook, parse_certificate
from shared.security.resource_data import ResourceDataReader
from shared.security.tokens import TokenGate, openid_configuration_url
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore

SUBSCRIPTION_ID = "5a1f3c4e-7d0b-4b8e-9a0c-1f2e3d4c5b6a"
SECRET = "rich-client-state"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "7f1b2b5c-1111-4c3c-9e2e-0a0b0c0d0e0f"
AUTHORITY = "https://login.example.test"
JWKS_URI = f"{AUTHORITY}/common/discovery/v2.0/keys"
RESOURCE = "teams/team-1/channels/19:general@thread.tacv2/messages"
MESSAGE: dict[str, Any] = {
    "@odata.type": "#Microsoft.Graph.chatMessage",
    "@odata.etag": "1616990032035",
    "id": "1616990032035",
    "channelIdentity": {"teamId": "team-1", "channelId": "19:general@thread.tacv2"},
    "body": {"contentType": "text", "content": "quarterly numbers attached"},
    "lastModifiedDateTime": "2026-11-22T10:00:00Z",
}


@pytest.fixture(scope="module")
def signer() -> ValidationTokenSigner:
    return ValidationTokenSigner()


@pytest.fixture(scope="module")
def certificate() -> SampleCertificate:
    return make_certificate()


class Authority:
    def __init__(self, signer: ValidationTokenSigner) -> None:
        self.signer = signer
        self.down = False

    async def fetch(self, url: str) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("unreachable")
        if url == openid_configuration_url(AUTHORITY):
            return {"jwks_uri": JWKS_URI}
        return {"keys": [self.signer.jwk()]}


@pytest.fixture
async def stack(
    azurite: Azurite, unique_name: Callable[[str], str], signer: ValidationTokenSigner
) -> AsyncIterator[tuple[Ingest, str, Authority]]:
    """An Ingest with a token gate, over a fresh table holding one Teams subscription and a fresh queue."""
    table, queue = unique_name("subs"), unique_name("notes")
    authority = Authority(signer)
    async with AsyncExitStack() as clients:
        store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
        await store.setup()
        key = f"{RESOURCE.replace('/', ':')}|created"
        await store.save(
            SubscriptionRecord(key, RESOURCE, "created", SECRET, ACTIVE, datetime.now(UTC), SUBSCRIPTION_ID)
        )
        target = await clients.enter_async_context(queue_client(azurite.connection_string, queue))
        gate = TokenGate(CLIENT_ID, TENANT, AUTHORITY, fetch=authority.fetch)
        yield Ingest(SecretBook(store.secret), MessageQueue(target), tokens=gate), queue, authority


def refused(reason: refusals.Reason) -> int:
    """Items this process counted as refused for ``reason`` (nothing flushes in these tests)."""
    return sum(row.count for row in refusals.ledger().due(utcnow()) if row.reason is reason)


def rich_batch(
    certificate: SampleCertificate, tokens: list[str], content: dict[str, Any] | None = None, tenant: str = TENANT
) -> bytes:
    item = {
        "subscriptionId": SUBSCRIPTION_ID,
        "changeType": "created",
        "resource": RESOURCE,
        "clientState": SECRET,
        "tenantId": tenant,
        "resourceData": {"id": MESSAGE["id"], "@odata.type": "#Microsoft.Graph.chatMessage"},
        "encryptedContent": content or encrypt_content(MESSAGE, certificate.public_base64, "cert-1"),
    }
    return json.dumps({"value": [item], "validationTokens": tokens}).encode()


async def test_a_batch_with_valid_v1_and_v2_tokens_is_stored(
    stack: tuple[Ingest, str, Authority],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
) -> None:
    ingest, queue, _ = stack
    tokens = [signer.token(TENANT, CLIENT_ID, version=1), signer.token(TENANT, CLIENT_ID, version=2)]
    assert (await ingest.accept(rich_batch(certificate, tokens))).status == 202
    [stored] = await receive_json(azurite.connection_string, queue)
    assert refusals.ledger().due(utcnow()) == []
    assert stored["value"][0]["encryptedContent"]["encryptionCertificateId"] == "cert-1"


async def test_a_forged_token_is_answered_202_with_nothing_stored(
    stack: tuple[Ingest, str, Authority],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingest, queue, _ = stack
    forged = forge(signer.token(TENANT, CLIENT_ID))
    good = signer.token(TENANT, CLIENT_ID)
    assert (await ingest.accept(rich_batch(certificate, [good, forged]))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert "bad signature" in caplog.text and forged not in caplog.text
    assert refused(refusals.Reason.BAD_VALIDATION_TOKEN) == 1


@pytest.mark.parametrize("version", [1, 2])
async def test_a_token_graph_minted_for_another_tenant_is_answered_202_with_nothing_stored(
    stack: tuple[Ingest, str, Authority],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
    version: int,
) -> None:
    # Signed by the authority's key, for this app, with tid, issuer and items all naming the other tenant.
    ingest, queue, _ = stack
    foreign = signer.token(OTHER_TENANT, CLIENT_ID, version=version)
    assert (await ingest.accept(rich_batch(certificate, [foreign], tenant=OTHER_TENANT))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert refused(refusals.Reason.BAD_VALIDATION_TOKEN) == 1


async def test_a_notification_of_another_tenant_is_answered_202_with_nothing_stored(
    stack: tuple[Ingest, str, Authority],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
) -> None:
    ingest, queue, _ = stack
    ours = signer.token(TENANT, CLIENT_ID)
    assert (await ingest.accept(rich_batch(certificate, [ours], tenant=OTHER_TENANT))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert refused(refusals.Reason.BAD_VALIDATION_TOKEN) == 1


async def test_resource_data_without_tokens_is_not_stored(
    stack: tuple[Ingest, str, Authority], azurite: Azurite, certificate: SampleCertificate
) -> None:
    ingest, queue, _ = stack
    assert (await ingest.accept(rich_batch(certificate, []))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert refused(refusals.Reason.BAD_VALIDATION_TOKEN) == 1


async def test_an_unreachable_authority_is_answered_503_so_graph_retries(
    stack: tuple[Ingest, str, Authority],
    azurite: Azurite,
    signer: ValidationTokenSigner,
    certificate: SampleCertificate,
) -> None:
    ingest, queue, authority = stack
    authority.down = True
    assert (await ingest.accept(rich_batch(certificate, [signer.token(TENANT, CLIENT_ID)]))).status == 503
    assert await receive_json(azurite.connection_string, queue) == []


def test_a_stored_channel_message_is_read_back_decrypted_and_a_tampered_one_is_kept_aside(
    certificate: SampleCertificate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    reader = ResourceDataReader(book, lambda: datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC))
    good = json.loads(rich_batch(certificate, []))["value"][0]
    bad = good | {"encryptedContent": tamper(good["encryptedContent"])}
    envelope = Envelope.from_json(Envelope("notifications", datetime.now(UTC), [good, bad, good]).to_json())
    reading = reader.read(SUBSCRIPTION_ID, envelope.items)
    assert [resource for _, resource in reading.told] == [MESSAGE, MESSAGE]
    assert reading.undecryptable == [bad]
    assert "dataSignature mismatch" in caplog.text
    assert "quarterly numbers" not in caplog.text
