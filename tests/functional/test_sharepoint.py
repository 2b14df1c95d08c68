"""SharePoint's own list webhooks end to end: real Azurite, the simulator's SharePoint, a certificate credential."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import azure.functions as func
import pytest
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import ClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from devtools.azurite import free_port
from devtools.launch import start_simulator
from devtools.simclient import SimControl
from shared.app.credentials import build_sharepoint_client
from shared.app.worker import build_worker
from shared.app.worker import sharepoint_desired as desired
from shared.clock import parse_time, utcnow
from shared.config.settings import Settings
from shared.ingest.receiver import answer_handshake
from shared.model.events import event_id
from shared.model.names import NOTIFICATIONS_QUEUE
from shared.model.sharepoint import SharePointList
from shared.stores.clients import queue_client
from tests.functional.app_functions import FUNCTIONS
from tests.functional.stacks import Stack

SITE = "team"
PASSWORD = "test-only-password"


@dataclass
class Certificate:
    path: Path
    public_pem: str


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed client certificate made for this test (never checked in), as a password-protected PFX."""
    return make_certificate(tmp_path / "app-certificate.pfx")


def make_certificate(path: Path) -> Certificate:
    """A new key and self-signed certificate, written to ``path`` as a PFX protected by PASSWORD."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sharepoint-test-app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    public = cert.public_bytes(serialization.Encoding.PEM)
    # A password-protected PFX, as Key Vault or an admin would hand it over.
    pfx = pkcs12.serialize_key_and_certificates(
        b"app", key, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode())
    )
    path.write_bytes(pfx)
    return Certificate(path, public.decode())


@dataclass
class ListStack:
    stack: Stack
    list_id: str
    site_url: str

    @property
    def control(self) -> Any:
        return self.stack.control

    async def reconcile(self, offset: timedelta = timedelta(0)) -> Any:
        reconciler = self.stack.worker.sharepoint
        assert reconciler is not None
        return await reconciler.reconcile(desired(self.stack.worker.settings), utcnow() + offset)

    def events_for(self, unique_id: str) -> list[dict[str, Any]]:
        return [e for e in self.stack.events if e["itemId"] == unique_id.lower()]


async def watched_list(stack_factory: Any, certificate: Certificate) -> ListStack:
    """A stack whose worker watches one simulated list through SharePoint's webhooks, subscribed and synced."""
    stack = await stack_factory()
    site = await stack.control.sp_site(SITE)
    list_id = await stack.control.sp_list(SITE)
    await stack.control.sp_register_certificate(certificate.public_pem)
    env = {
        **stack.env,
        "SHAREPOINT_SUBSCRIPTIONS": json.dumps([{"site": site["url"], "list": list_id}]),
        "SHAREPOINT_CERTIFICATE": str(certificate.path),
        "SHAREPOINT_CERTIFICATE_PASSWORD": PASSWORD,
    }
    stack.others.append(stack.worker)
    stack.worker = await build_worker(env)
    watched = ListStack(stack, list_id, site["url"])
    report = await watched.reconcile()
    assert (report.created, report.failed) == (1, 0)
    await stack.pump(lambda: True)  # the sync requested at creation: the first enumeration
    return watched


async def test_a_tick_logs_one_reconciliation_line_per_service(stack_factory, certificate, caplog):
    watched = await watched_list(stack_factory, certificate)
    caplog.set_level(logging.INFO, logger="shared.reconcile.reconciler")
    await watched.stack.worker.renew(utcnow())
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "subscriptions.reconciled"]
    assert len(lines) == 2
    assert len(set(lines)) == 2, lines  # each says whose subscriptions it reconciled
    assert {getattr(r, "service", "") for r in caplog.records if hasattr(r, "service")} == {"graph", "sharepoint"}


async def test_a_validated_subscription_turns_item_changes_into_list_item_events(stack_factory, certificate):
    watched = await watched_list(stack_factory, certificate)
    control, stack = watched.control, watched.stack
    [sub] = await control.sp_subscriptions()
    assert sub["listId"] == watched.list_id
    assert sub["notificationUrl"] == stack.env["NOTIFICATION_URL"].replace("/notifications", "/sharepoint")
    lifetime = parse_time(sub["expirationDateTime"]) - utcnow()
    assert timedelta(days=179) < lifetime <= timedelta(days=180)
    assert (await control.sp_stats())["handshakes"] == 1
    [record] = await stack.worker.sharepoint._store.list()
    assert record.subscription_id == sub["id"]
    # Graph's reconciler does not see SharePoint's records, so it never deletes them.
    assert await stack.worker.reconciler._store.list() == []

    added = await control.sp_add_item(watched.list_id, Title="Budget")
    unique = added["UniqueId"]
    await stack.pump(lambda: len(watched.events_for(unique)) == 1)
    await control.sp_update_item(watched.list_id, added["Id"], Title="Budget 2027")
    await stack.pump(lambda: len(watched.events_for(unique)) == 2)
    await control.sp_delete_item(watched.list_id, added["Id"])
    await stack.pump(lambda: len(watched.events_for(unique)) == 3)

    created, updated, deleted = watched.events_for(unique)
    assert [e["changeType"] for e in (created, updated, deleted)] == ["created", "updated", "deleted"]
    for event in (created, updated, deleted):
        assert (event["kind"], event["containerId"], event["resync"]) == ("listItem", watched.list_id, False)
    assert created["item"]["Title"] == "Budget" and updated["item"]["Title"] == "Budget 2027"
    item = updated["item"]
    assert (item["siteUrl"], item["listId"], item["UniqueId"]) == (watched.site_url, watched.list_id, unique)
    assert item["webId"]
    assert deleted["item"] is None
    # Stable ids: derived from the item's UniqueId and version only, so a repeated read gives the same id.
    version = str(updated["item"]["owshiddenversion"])
    assert updated["id"] == event_id("listItem", watched.list_id, unique.lower(), "updated", version)
    assert len({created["id"], updated["id"], deleted["id"]}) == 3


async def test_an_expired_change_token_resyncs_and_finds_deletions(stack_factory, certificate):
    watched = await watched_list(stack_factory, certificate)
    control, stack = watched.control, watched.stack
    kept = await control.sp_add_item(watched.list_id, Title="kept")
    gone = await control.sp_add_item(watched.list_id, Title="gone")
    await stack.pump(lambda: len(watched.events_for(kept["UniqueId"]) + watched.events_for(gone["UniqueId"])) == 2)
    await control.sp_delete_quietly(watched.list_id, gone["Id"])
    await control.sp_expire_tokens(watched.list_id)
    fresh = await control.sp_add_item(watched.list_id, Title="fresh")

    await stack.pump(lambda: watched.events_for(fresh["UniqueId"]) and len(watched.events_for(gone["UniqueId"])) == 2)
    [_, deleted] = watched.events_for(gone["UniqueId"])
    assert (deleted["changeType"], deleted["resync"]) == ("deleted", True)
    [created] = watched.events_for(fresh["UniqueId"])
    assert (created["changeType"], created["resync"]) == ("created", True)
    assert len(watched.events_for(kept["UniqueId"])) == 1  # unchanged: not reported again


async def test_renewal_keeps_the_subscription_within_180_days_and_a_forged_client_state_stores_nothing(
    stack_factory,
    certificate,
):
    watched = await watched_list(stack_factory, certificate)
    [before] = await watched.control.sp_subscriptions()
    later = timedelta(days=91)
    await watched.control.advance_clock(later.total_seconds())
    report = await watched.reconcile(later)
    assert (report.renewed, report.created, report.recreated, report.failed) == (1, 0, 0, 0)
    [after] = await watched.control.sp_subscriptions()
    assert after["id"] == before["id"]
    expiry = parse_time(after["expirationDateTime"])
    assert expiry > parse_time(before["expirationDateTime"])
    assert expiry - (utcnow() + later) <= timedelta(days=180)

    url = watched.stack.env["NOTIFICATION_URL"].replace("/notifications", "/sharepoint")
    item = {
        "subscriptionId": after["id"],
        "clientState": "forged",
        "expirationDateTime": after["expirationDateTime"],
        "resource": watched.list_id,
        "tenantId": "t",
        "siteUrl": "/sites/team",
        "webId": "w",
    }
    async with aiohttp.ClientSession() as session, session.post(url, json={"value": [item]}) as response:
        assert response.status == 202
    async with queue_client(watched.stack.connection, NOTIFICATIONS_QUEUE) as client:
        assert [m async for m in client.receive_messages(max_messages=32)] == []


async def test_lost_expired_stray_and_undesired_subscriptions_are_repaired(stack_factory, certificate):
    watched = await watched_list(stack_factory, certificate)
    control = watched.control
    url = watched.stack.env["NOTIFICATION_URL"].replace("/notifications", "/sharepoint")
    [first] = await control.sp_subscriptions()

    # Lost at SharePoint: missing from the list's subscriptions, so re-created.
    await control.sp_drop_subscription(first["id"])
    report = await watched.reconcile()
    assert (report.recreated, report.failed) == (1, 0)
    [second] = await control.sp_subscriptions()
    assert second["id"] != first["id"]

    # Expired (SharePoint deletes it): re-created too, with a new 180-day lifetime.
    later = timedelta(days=181)
    await control.advance_clock(later.total_seconds())
    report = await watched.reconcile(later)
    assert (report.recreated, report.failed) == (1, 0)
    [third] = await control.sp_subscriptions()
    assert third["id"] != second["id"]
    assert parse_time(third["expirationDateTime"]) - (utcnow() + later) > timedelta(days=179)

    # One for our URL that the table does not know (clientState unknown): deleted, not adopted.
    stray = await control.sp_add_subscription(watched.list_id, url)
    await watched.reconcile(later)
    assert [s["id"] for s in await control.sp_subscriptions()] == [third["id"]]
    assert stray["id"] != third["id"]

    # No longer desired: deleted at SharePoint and in the table.
    reconciler = watched.stack.worker.sharepoint
    report = await reconciler.reconcile([], utcnow() + later)
    assert (report.deleted, report.failed) == (1, 0)
    assert await control.sp_subscriptions() == []
    assert await reconciler._store.list() == []


async def test_the_sharepoint_route_answers_its_handshake_within_5_seconds(monkeypatch):

    # A cold start: no storage setting, nothing built yet.
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    route = FUNCTIONS["sharepoint"]
    request = func.HttpRequest("POST", "http://localhost/api/sharepoint", params={"validationtoken": "a b+c"}, body=b"")
    started = time.monotonic()
    response = await route.get_user_function()(request)
    assert time.monotonic() - started < 5
    assert (response.status_code, response.get_body(), response.mimetype) == (200, b"a b+c", "text/plain")


@pytest.fixture
async def sharepoint_sim(tmp_path: Path, certificate: Certificate) -> AsyncIterator[tuple[Any, SimControl, str, str]]:
    """The simulator alone, with one site and list, the certificate registered: (sim, control, site URL, list id)."""
    sim = start_simulator(tmp_path / "sim")
    try:
        async with SimControl(sim.control_url) as control:
            site = await control.sp_site(SITE)
            list_id = await control.sp_list(SITE)
            await control.sp_register_certificate(certificate.public_pem)
            yield sim, control, site["url"], list_id
    finally:
        sim.stop()


def _settings(sim: Any, certificate: Certificate | None) -> Settings:
    env = {
        **sim.settings(),
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "NOTIFICATION_URL": "http://127.0.0.1:1/api/notifications",
        "LIFECYCLE_NOTIFICATION_URL": "http://127.0.0.1:1/api/lifecycle",
    }
    if certificate is not None:
        env |= {"SHAREPOINT_CERTIFICATE": str(certificate.path), "SHAREPOINT_CERTIFICATE_PASSWORD": PASSWORD}
    return Settings.from_env(env)


async def test_a_failed_delivery_is_retried_then_dropped(sharepoint_sim, certificate):
    sim, control, site_url, list_id = sharepoint_sim
    await control.sp_delivery(retries=2, retrySeconds=0.2)
    answers = [503, 503, 202]  # the third try succeeds; then every delivery fails
    received: list[tuple[float, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        reply = answer_handshake(dict(request.query))
        if reply is not None:
            return web.Response(status=reply.status, text=reply.body, content_type=reply.mimetype)
        received.append((time.monotonic(), await request.json()))
        arrived.set()
        return web.Response(status=answers.pop(0) if answers else 503)

    async def deliveries(count: int) -> None:
        async with asyncio.timeout(10):
            while len(received) < count:
                arrived.clear()
                await arrived.wait()

    app = web.Application()
    app.router.add_post("/api/sharepoint", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = await build_sharepoint_client(_settings(sim, certificate))
    try:
        target = SharePointList(site_url, list_id)
        expiry = utcnow() + timedelta(days=1)
        created = await client.create_subscription(target, f"http://127.0.0.1:{port}/api/sharepoint", "cs", expiry)
        await control.sp_add_item(list_id, Title="a")
        await deliveries(3)
        [item] = received[2][1]["value"]
        assert (item["subscriptionId"], item["clientState"], item["resource"]) == (created["id"], "cs", list_id)
        assert set(item) == {
            "subscriptionId",
            "clientState",
            "expirationDateTime",
            "resource",
            "tenantId",
            "siteUrl",
            "webId",
        }
        assert all(later - earlier >= 0.2 for (earlier, _), (later, _) in itertools.pairwise(received))

        await control.sp_add_item(list_id, Title="b")  # 1 try + 2 retries, all failing: dropped
        await deliveries(6)
        async with asyncio.timeout(10):
            while (await control.sp_stats())["dropped"] == 0:
                pass  # the simulator counts the drop just after the last failed answer
        assert len(received) == 6
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_unregistered_certificate_gets_no_token(sharepoint_sim, tmp_path):
    sim, control, site_url, list_id = sharepoint_sim
    stranger = make_certificate(tmp_path / "stranger.pfx")
    client = await build_sharepoint_client(_settings(sim, stranger))
    try:
        with pytest.raises(ClientAuthenticationError):
            await client.current_token(SharePointList(site_url, list_id))
    finally:
        await client.close()
    assert (await control.sp_stats())["requests"] == 0


async def test_sharepoint_refuses_a_token_obtained_with_a_client_secret(sharepoint_sim):
    sim, control, site_url, list_id = sharepoint_sim
    settings = _settings(sim, None)
    async with ClientSecretCredential(
        settings.tenant_id,
        settings.client_id,
        str(settings.client_secret),
        authority=settings.authority_host,
        connection_verify=settings.authority_ca_file,
        disable_instance_discovery=True,
    ) as credential:
        token = await credential.get_token("https://graph.microsoft.com/.default")
    url = f"{site_url}/_api/web/lists('{list_id}')/CurrentChangeToken"
    headers = {"Authorization": f"Bearer {token.token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 401
    assert (await control.sp_stats())["authFailures"] == 1
