"""Rich notifications in a multi-tenant deployment, against a real Azurite: each tenant's own tokens only.

Three tenants' subscriptions are stored. A batch is stored only when each tenant it names is
vouched for by a validation token from that tenant's own issuer, and each item names its
subscription's tenant; a token of another tenant of the same deployment does not do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest

from devtools.azurite import Azurite
from devtools.graphsim.rich import SampleCertificate, ValidationTokenSigner, encrypt_content
from devtools.messages import receive_json
from shared import refusals
from shared.clock import utcnow
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import SecretBook
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.model.tenant import scoped_key
from shared.queues.message_queue import MessageQueue
from shared.security.tokens import TokenGate
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore
from tests.functional.test_rich_notifications import (  # the same authority, signer and certificate
    AUTHORITY,
    CLIENT_ID,
    RESOURCE,
    Authority,
    certificate,
    signer,
)

__all__ = ["certificate", "signer"]  # fixtures, used by name

A, B, C = (f"{n}{n}{n}{n}{n}{n}{n}{n}-1111-2222-3333-444444444444" for n in "abc")
MESSAGE = {"@odata.type": "#Microsoft.Graph.chatMessage", "id": "1616990032035", "body": {"content": "hi"}}


@pytest.fixture
async def ingest(
    azurite: Azurite, unique_name: Callable[[str], str], signer: ValidationTokenSigner
) -> AsyncIterator[tuple[Ingest, str]]:
    """The HTTP path of a multi-tenant deployment over one subscription per tenant (ids sub-a, sub-b, sub-c)."""
    table, queue = unique_name("subs"), unique_name("notes")
    async with AsyncExitStack() as clients:
        store = SubscriptionStore(await clients.enter_async_context(table_client(azurite.connection_string, table)))
        await store.setup()
        for tenant in (A, B, C):
            key = scoped_key(tenant, f"{RESOURCE.replace('/', ':')}|created")
            record = SubscriptionRecord(key, RESOURCE, "created", f"state-{tenant[0]}", ACTIVE, datetime.now(UTC))
            await store.save(record.activated(f"sub-{tenant[0]}", datetime.now(UTC), datetime.now(UTC)))
        target = await clients.enter_async_context(queue_client(azurite.connection_string, queue))
        gate = TokenGate(CLIENT_ID, None, AUTHORITY, fetch=Authority(signer).fetch, multi=True)
        yield Ingest(SecretBook(store.subscription_secret), MessageQueue(target), tokens=gate), queue


def batch(certificate: SampleCertificate, tokens: list[str], *items: tuple[str, str]) -> bytes:
    """A rich batch: one item per (subscription's tenant, tenantId it names)."""
    value = [
        {
            "subscriptionId": f"sub-{owner[0]}",
            "clientState": f"state-{owner[0]}",
            "changeType": "created",
            "resource": RESOURCE,
            "tenantId": named,
            "resourceData": {"id": MESSAGE["id"]},
            "encryptedContent": encrypt_content(MESSAGE, certificate.public_base64, "cert-1"),
        }
        for owner, named in items
    ]
    return json.dumps({"value": value, "validationTokens": tokens}).encode()


def refused(reason: refusals.Reason) -> int:
    return sum(row.count for row in refusals.ledger().due(utcnow()) if row.reason is reason)


async def test_each_tenants_items_with_that_tenants_tokens_are_stored(
    ingest: tuple[Ingest, str], azurite: Azurite, signer: ValidationTokenSigner, certificate: SampleCertificate
) -> None:
    receiver, queue = ingest
    tokens = [signer.token(B, CLIENT_ID), signer.token(C, CLIENT_ID, version=2)]
    assert (await receiver.accept(batch(certificate, tokens, (B, B), (C, C)))).status == 202
    [stored] = await receive_json(azurite.connection_string, queue)
    assert sorted(item["tenantId"] for item in stored["value"]) == [B, C]


async def test_a_token_of_another_tenant_of_the_deployment_stores_nothing(
    ingest: tuple[Ingest, str], azurite: Azurite, signer: ValidationTokenSigner, certificate: SampleCertificate
) -> None:
    receiver, queue = ingest
    # Graph's genuine token, for this app, but tenant C's: it cannot vouch for tenant B's notification.
    assert (await receiver.accept(batch(certificate, [signer.token(C, CLIENT_ID)], (B, B)))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert refused(refusals.Reason.BAD_VALIDATION_TOKEN) == 1


async def test_an_item_passed_off_as_another_tenants_on_a_subscription_stores_nothing(
    ingest: tuple[Ingest, str], azurite: Azurite, signer: ValidationTokenSigner, certificate: SampleCertificate
) -> None:
    receiver, queue = ingest
    # C's token and an item naming C, but on B's subscription (with B's clientState): the tenants disagree.
    assert (await receiver.accept(batch(certificate, [signer.token(C, CLIENT_ID)], (B, C)))).status == 202
    assert await receive_json(azurite.connection_string, queue) == []
    assert refused(refusals.Reason.TENANT_MISMATCH) == 1
