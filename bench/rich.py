"""Rich notifications: validation-token checking per batch (cold and warm key cache), the HTTP path's
p99 at 32 senders with tokens against the same path without, and decryption throughput.

The authority is the Graph simulator's (its OpenID configuration and JWKS over TLS),
so a cold check pays the real two HTTPS fetches; the HTTP path is shared.ingest.receiver
behind an aiohttp receiver, storing into a private Azurite, as in the functional tests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from devtools.azurite import free_port
from devtools.graphsim.config import SimConfig
from devtools.graphsim.rich import SampleCertificate, ValidationTokenSigner, encrypt_content, make_certificate
from devtools.graphsim.server import SimHandle, start
from devtools.messages import receive_json
from shared.app.receivers import build_ingest
from shared.ingest.receiver import answer_handshake
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.security.certificates import CertificateBook, parse_certificate
from shared.security.decryption import decrypt_content
from shared.security.tokens import TokenGate
from shared.stores.clients import table_client
from shared.stores.subscriptions import SubscriptionStore

from .harness import own_azurite, serving
from .report import Row, ms, percentile, rate, ratio, say

NAME = "rich"
SENDERS = 32
P99_GOAL = 0.100
ROUNDS = 4
SUBSCRIPTION_ID = "5a1f3c4e-7d0b-4b8e-9a0c-1f2e3d4c5b6a"
SECRET = "bench-client-state"
RESOURCE = "teams/team-1/channels/19:general@thread.tacv2/messages"
MESSAGE = {
    "id": "1616990032035",
    "etag": "1616990032035",
    "messageType": "message",
    "lastModifiedDateTime": "2026-11-22T10:00:00Z",
    "channelIdentity": {"teamId": "team-1", "channelId": "19:general@thread.tacv2"},
    "body": {"contentType": "html", "content": "<p>quarterly numbers attached</p>" * 8},
}


async def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def token_checks(
    sim: SimHandle, signer: ValidationTokenSigner, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """Seconds per batch check (a v1 and a v2 token): cold (a new gate: keys fetched over HTTPS), warm (keys
    cached, tokens new: signatures verified) and repeated (a token already verified, as Graph reuses them)."""
    tenant, client = sim.config.tenant_id, sim.config.client_id

    def pair() -> list[str]:
        # ``uti`` (Entra's unique token id) differs, so each pair is new to the checker.
        return [signer.token(tenant, client, v, uti=secrets.token_urlsafe(12)) for v in (1, 2)]

    async def check(gate: TokenGate, tokens: list[str]) -> None:
        refusal = await gate.refusal(tokens)
        if refusal is not None:
            raise RuntimeError(f"the simulator's tokens were refused: {refusal}")

    cold: list[float] = []
    for _ in range(rounds):
        gate, tokens = TokenGate(client, tenant, sim.authority, ca_file=sim.ca_file), pair()
        try:
            cold.append(await _timed(lambda: check(gate, tokens)))  # noqa: B023 - awaited at once
        finally:
            await gate.close()
    gate = TokenGate(client, tenant, sim.authority, ca_file=sim.ca_file)
    try:
        await check(gate, pair())
        fresh = [pair() for _ in range(rounds * 10)]  # signed beforehand: only the check is timed
        warm = [await _timed(lambda: check(gate, tokens)) for tokens in fresh]  # noqa: B023
        repeated = [await _timed(lambda: check(gate, fresh[0])) for _ in range(rounds * 10)]
    finally:
        await gate.close()
    return cold, warm, repeated


def decryption_rate(certificate: SampleCertificate, count: int) -> float:
    """Notifications decrypted (RSA-OAEP unwrap, HMAC check, AES-CBC, JSON) per second."""
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    contents = [encrypt_content(MESSAGE, certificate.public_base64, "cert-1") for _ in range(count)]
    started = time.perf_counter()
    for content in contents:
        decrypt_content(content, book)
    return count / (time.perf_counter() - started)


@asynccontextmanager
async def receiver(env: dict[str, str]) -> AsyncIterator[str]:
    """The HTTP path (shared.ingest.receiver with its token gate) on a local port; yields its URL."""
    receivers = await build_ingest(env)

    async def handle(request: web.Request) -> web.Response:
        reply = answer_handshake(dict(request.query)) or await receivers.notifications.accept(await request.read())
        return web.Response(status=reply.status, text=reply.body, content_type=reply.mimetype)

    app = web.Application()
    app.router.add_post("/api/notifications", handle)
    try:
        async with serving(app, free_port()) as base:
            yield f"{base}/api/notifications"
    finally:
        await receivers.close()


async def post_latencies(url: str, bodies: list[bytes], senders: int) -> tuple[list[float], int]:
    """POST every body with ``senders`` concurrent senders; (latencies, non-202 answers)."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders)) as session:

        async def sender() -> None:
            nonlocal failures
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    failures += response.status != 202
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(sender() for _ in range(senders)))
    return latencies, failures


def batch(certificate: SampleCertificate, tokens: list[str] | None, tenant: str) -> bytes:
    """One notification as Graph sends it for the channel: rich (with tokens) or plain."""
    item: dict[str, Any] = {
        "subscriptionId": SUBSCRIPTION_ID,
        "changeType": "created",
        "resource": RESOURCE,
        "clientState": SECRET,
        "tenantId": tenant,
        "resourceData": {"id": MESSAGE["id"], "@odata.type": "#Microsoft.Graph.chatMessage"},
    }
    if tokens is None:
        return json.dumps({"value": [item]}).encode()
    item["encryptedContent"] = encrypt_content(MESSAGE, certificate.public_base64, "cert-1")
    return json.dumps({"value": [item], "validationTokens": tokens}).encode()


async def http_path(
    sim: SimHandle, signer: ValidationTokenSigner, certificate: SampleCertificate, requests: int
) -> tuple[list[float], int, list[float], int, tuple[int, int]]:
    """(rich latencies, rich failures, plain latencies, plain failures, (rich, plain) items stored).

    At SENDERS concurrent senders; a 202 whose items were refused (a token or tenant that does
    not check out) would make the latencies those of a refusal, so the items stored are counted.
    """
    async with own_azurite() as azurite:
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "GRAPH_CLIENT_ID": sim.config.client_id,
            "GRAPH_TENANT_ID": sim.config.tenant_id,
            "AZURE_AUTHORITY_HOST": sim.authority,
            "AZURE_AUTHORITY_CA_FILE": sim.ca_file,
        }
        async with table_client(azurite.connection_string, SUBSCRIPTIONS_TABLE) as client:
            store = SubscriptionStore(client)
            await store.setup()
            key = f"{RESOURCE.replace('/', ':')}|created"
            record = SubscriptionRecord(key, RESOURCE, "created", SECRET, ACTIVE, datetime.now(UTC), SUBSCRIPTION_ID)
            await store.save(record)
        tokens = [signer.token(sim.config.tenant_id, sim.config.client_id, 1)]
        tenant = sim.config.tenant_id
        rich_body, plain_body = batch(certificate, tokens, tenant), batch(certificate, None, tenant)
        async with receiver(env) as url:
            # Warm-up: the key fetch, the secret cache, the queue's creation, the connections.
            await post_latencies(url, [rich_body] * SENDERS, SENDERS)
            # Alternating rounds, so neither kind pays alone for a growing queue or a busy neighbour.
            rich: list[float] = []
            plain: list[float] = []
            rich_failures = plain_failures = 0
            for _ in range(ROUNDS):
                latencies, failed = await post_latencies(url, [plain_body] * (requests // ROUNDS), SENDERS)
                plain, plain_failures = plain + latencies, plain_failures + failed
                latencies, failed = await post_latencies(url, [rich_body] * (requests // ROUNDS), SENDERS)
                rich, rich_failures = rich + latencies, rich_failures + failed
        stored = [i for e in await receive_json(azurite.connection_string, NOTIFICATIONS_QUEUE) for i in e["value"]]
        rich_stored = sum(1 for item in stored if "encryptedContent" in item) - SENDERS  # less the warm-up
        return rich, rich_failures, plain, plain_failures, (rich_stored, len(stored) - SENDERS - rich_stored)


async def run(quick: bool) -> list[Row]:
    """Measure and return the figures."""
    rounds, requests, decryptions = (10, 400, 300) if quick else (30, 2000, 2000)
    certificate = make_certificate("bench-notifications")
    sim = await start(SimConfig(port=0, tls_port=0))
    try:
        signer = sim.state.issuer.validation
        say(f"   token checks: {rounds} cold, {rounds * 10} warm")
        cold, warm, repeated = await token_checks(sim, signer, rounds)
        say(f"   HTTP path: {requests} POSTs by {SENDERS} senders, plain then rich")
        rich, rich_failures, plain, plain_failures, stored = await http_path(sim, signer, certificate, requests)
    finally:
        await sim.close()
    say(f"   decryption: {decryptions} notifications")
    per_second = decryption_rate(certificate, decryptions)
    rich_p99, plain_p99 = percentile(rich, 99), percentile(plain, 99)
    return [
        Row(NAME, "token check per batch (2 tokens), cold key cache, median", ms(percentile(cold, 50))),
        Row(NAME, "token check per batch (2 tokens), warm key cache, median", ms(percentile(warm, 50))),
        Row(NAME, "token check per batch (2 tokens), warm key cache, p99", ms(percentile(warm, 99))),
        Row(NAME, "token check per batch (2 tokens), tokens seen before, median", ms(percentile(repeated, 50))),
        Row(
            NAME,
            f"HTTP path p99 at {SENDERS} senders, rich batch with a token",
            ms(rich_p99),
            baseline=f"{ms(plain_p99)} plain",
            ratio=ratio(rich_p99, plain_p99),
            goal=f"< {ms(P99_GOAL)}",
            met=rich_p99 < P99_GOAL and rich_failures == 0 and stored == (len(rich), len(plain)),
        ),
        Row(NAME, "HTTP path non-202 answers (rich / plain)", f"{rich_failures} / {plain_failures}"),
        Row(
            NAME,
            "HTTP path items stored (rich / plain)",
            f"{stored[0]:,} / {stored[1]:,} of {len(rich):,} / {len(plain):,}",
            goal="every one",
            met=stored == (len(rich), len(plain)),
        ),
        Row(NAME, "decryption throughput (RSA-2048 unwrap, HMAC, AES-CBC)", rate(per_second, "notifications/s")),
    ]
