"""Functional tests of the Microsoft Graph simulator (devtools.graphsim).

Each test starts its own simulator in-process (or as a subprocess for the CLI test) and
talks to it with the real clients the function app uses: azure-identity and msgraph-sdk.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient

from devtools.graphsim.config import SimConfig
from devtools.graphsim.server import SimHandle, start
from devtools.simclient import SimControl

REPO = Path(__file__).resolve().parents[2]

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- fixtures


SimFactory = Callable[..., Awaitable[SimHandle]]


@pytest_asyncio.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Factory: start a simulator with config overrides; all are stopped afterwards."""
    handles: list[SimHandle] = []

    async def factory(**overrides: Any) -> SimHandle:
        settings: dict[str, Any] = {
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "validation_timeout_seconds": 2.0,
        }
        settings.update(overrides)
        handle = await start(SimConfig(**settings))
        handles.append(handle)
        return handle

    yield factory
    for h in handles:
        await h.close()


@pytest_asyncio.fixture
async def sim(make_sim: SimFactory) -> SimHandle:
    """A simulator with test-friendly retry timings."""
    return await make_sim()


@dataclass
class Receiver:
    """A tiny webhook endpoint recording what the simulator sends it."""

    url: str
    validations: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    mode: str = "echo"  # echo | wrong | slow | json
    fail_next: int = 0  # answer this many notification POSTs with 503
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(
                {
                    "token": token,
                    "raw_query": request.raw_path.split("?", 1)[1],
                    "code": request.query.get("code"),
                    "content_type": request.headers.get("Content-Type"),
                    "body": await request.read(),
                }
            )
            if self.mode == "slow":
                await asyncio.sleep(1.5)
            if self.mode == "wrong":
                # A classic bug: echoing the still-encoded query value.
                raw = request.raw_path.split("validationToken=", 1)[1]
                return web.Response(text=raw, content_type="text/plain")
            if self.mode == "json":
                return web.json_response(token)
            return web.Response(text=token, content_type="text/plain")
        self.posts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        body = await request.json()
        self.notifications.extend(body["value"])
        self.got.set()
        return web.Response(status=202)

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        """Wait until ``count`` notifications arrived."""

        async def _loop() -> None:
            while len(self.notifications) < count:
                self.got.clear()
                await self.got.wait()

        await asyncio.wait_for(_loop(), within)


ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest_asyncio.fixture
async def make_receiver() -> AsyncIterator[ReceiverFactory]:
    """Factory: start a webhook receiver on 127.0.0.1 (``query`` is appended to its URL)."""
    runners: list[web.AppRunner] = []

    async def factory(mode: str = "echo", query: str = "code=fn-key%2Babc") -> Receiver:
        receiver = Receiver(url="", mode=mode)
        app = web.Application()
        app.router.add_post("/api/notify", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/api/notify" + (f"?{query}" if query else "")
        return receiver

    yield factory
    for r in runners:
        await r.cleanup()


def credential(sim: SimHandle, secret: str | None = None) -> ClientSecretCredential:
    """An async azure-identity credential against the simulator's TLS authority."""
    return ClientSecretCredential(
        sim.config.tenant_id,
        sim.config.client_id,
        secret or sim.config.client_secret,
        authority=sim.authority,
        disable_instance_discovery=True,
        connection_verify=sim.ca_file,
    )


def sdk_client(sim: SimHandle) -> tuple[GraphServiceClient, ClientSecretCredential]:
    """A msgraph-sdk client pointed at the simulator, and its credential (close it)."""
    cred = credential(sim)
    auth = AzureIdentityAuthenticationProvider(cred, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
    client = GraphServiceClient(request_adapter=GraphRequestAdapter(auth))
    client.request_adapter.base_url = sim.graph_url
    return client, cred


async def subscribed_drive(sim: SimHandle, url: str) -> dict[str, Any]:
    """A new drive with a subscription that notifies ``url``."""
    graph, cred = sdk_client(sim)
    drive = await make_drive(sim)
    await subscribe(sim, graph, drive["id"], url)
    await cred.close()
    return drive


@pytest_asyncio.fixture
async def graph(sim: SimHandle) -> AsyncIterator[GraphServiceClient]:
    """A msgraph-sdk client pointed at the simulator."""
    client, cred = sdk_client(sim)
    yield client
    await cred.close()


async def control(sim: SimHandle, method: str, path: str, body: Any = None) -> Any:
    """Call the control API and return its JSON."""
    async with aiohttp.ClientSession() as s, s.request(method, sim.control_url + path, json=body) as r:
        assert r.status < 400, await r.text()
        return await r.json()


async def token_for(sim: SimHandle) -> str:
    """A bearer token from the simulator's token endpoint."""
    cred = credential(sim)
    try:
        return (await cred.get_token(GRAPH_SCOPE)).token
    finally:
        await cred.close()


async def raw_graph(
    sim: SimHandle, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    """Call Graph with aiohttp: (status, headers, JSON body or None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = path if path.startswith("http") else sim.graph_url + path
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, dict(r.headers), json.loads(text) if text else None


def subscription_body(drive_id: str, url: str, **fields: Any) -> dict[str, Any]:
    """A raw POST /subscriptions body for a drive root, expiring in an hour."""
    body = {
        "changeType": "updated",
        "notificationUrl": url,
        "resource": f"drives/{drive_id}/root",
        "expirationDateTime": future(60).isoformat(),
    }
    return body | fields


def future(minutes: float) -> datetime:
    """A UTC time ``minutes`` from now."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


def new_subscription(
    drive_id: str, url: str, lifecycle: str | None = None, minutes: float = 60, state: str = "s3cret"
) -> Subscription:
    """An msgraph Subscription for a drive root."""
    return Subscription(
        change_type="updated",
        notification_url=url,
        lifecycle_notification_url=lifecycle,
        resource=f"drives/{drive_id}/root",
        expiration_date_time=future(minutes),
        client_state=state,
    )


async def make_drive(sim: SimHandle, **body: Any) -> dict[str, Any]:
    """Create a drive through the control API."""
    result: dict[str, Any] = await control(sim, "POST", "/drives", body)
    return result


# --------------------------------------------------------------------------- identity


@pytest.mark.asyncio
async def test_async_credential_gets_graph_token(sim: SimHandle) -> None:
    token = await token_for(sim)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{sim.config.tenant_id}/"
    assert claims["tid"] == sim.config.tenant_id
    assert claims["appid"] == claims["azp"] == sim.config.client_id
    assert "Files.ReadWrite.All" in claims["roles"]
    assert claims["exp"] > claims["iat"]


@pytest.mark.asyncio
async def test_sync_credential_gets_graph_token(sim: SimHandle) -> None:
    cred = SyncClientSecretCredential(
        sim.config.tenant_id,
        sim.config.client_id,
        sim.config.client_secret,
        authority=sim.authority,
        disable_instance_discovery=True,
        connection_verify=sim.ca_file,
    )
    # The sync client blocks, and the simulator runs on this loop: use a thread.
    token = await asyncio.to_thread(cred.get_token, GRAPH_SCOPE)
    assert token.token.count(".") == 2


@pytest.mark.asyncio
async def test_wrong_secret_is_refused(sim: SimHandle) -> None:
    cred = credential(sim, secret="not-the-secret")
    with pytest.raises(ClientAuthenticationError) as info:
        await cred.get_token(GRAPH_SCOPE)
    await cred.close()
    assert "AADSTS7000215" in str(info.value)


@pytest.mark.asyncio
async def test_graph_rejects_missing_and_foreign_tokens(sim: SimHandle) -> None:
    status, headers, body = await raw_graph(sim, "GET", "/subscriptions", None)
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert headers["request-id"] == body["error"]["innerError"]["request-id"]
    forged = jwt.encode({"aud": "https://graph.microsoft.com"}, "k" * 32, algorithm="HS256")
    status, _, body = await raw_graph(sim, "GET", "/subscriptions", forged)
    assert status == 401


# --------------------------------------------------------------------------- subscriptions


@pytest.mark.asyncio
async def test_create_subscription_with_sdk_after_handshake(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive = await make_drive(sim)
    receiver = await make_receiver()
    created = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert created is not None and created.id
    assert created.resource == f"drives/{drive['id']}/root"
    assert created.client_state == "s3cret"
    assert created.application_id == sim.config.client_id
    # One validation request: POST, text/plain, empty body, token needed URL-encoding,
    # and the function key in the URL's query survived.
    [v] = receiver.validations
    assert v["content_type"].startswith("text/plain")
    assert v["body"] == b""
    assert v["code"] == "fn-key+abc"
    assert " " in v["token"] and "é✓" in v["token"] and "+%/&=" in v["token"]
    assert "%2B%25%2F%26%3D" in v["raw_query"]
    listed = await graph.subscriptions.get()
    assert listed is not None and [s.id for s in listed.value or []] == [created.id]
    fetched = await graph.subscriptions.by_subscription_id(created.id).get()
    assert fetched is not None and fetched.notification_url == receiver.url


@pytest.mark.asyncio
async def test_expiration_has_graph_format_and_minimum(sim: SimHandle, make_receiver: ReceiverFactory) -> None:
    drive, receiver, token = await make_drive(sim), await make_receiver(), await token_for(sim)
    body = {
        "changeType": "updated",
        "notificationUrl": receiver.url,
        "resource": f"/drives/{drive['id']}/root",
        "expirationDateTime": future(5).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    status, _, sub = await raw_graph(sim, "POST", "/subscriptions", token, body)
    assert status == 201, sub
    assert sub["expirationDateTime"].endswith("Z")
    assert len(sub["expirationDateTime"].split(".")[1]) == 8  # 7 digits + Z
    expiry = datetime.fromisoformat(sub["expirationDateTime"][:26] + "+00:00")
    assert expiry >= future(44)  # raised to 45 minutes


@pytest.mark.asyncio
async def test_handshake_with_encoded_echo_fails(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver("wrong")
    with pytest.raises(ODataError) as info:
        await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert info.value.response_status_code == 400
    assert info.value.error is not None and info.value.error.code == "ValidationError"
    assert "must respond with 200 OK" in (info.value.error.message or "")
    assert (await control(sim, "GET", "/subscriptions"))["value"] == []


@pytest.mark.asyncio
async def test_handshake_needs_text_plain(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver("json")
    with pytest.raises(ODataError) as info:
        await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert info.value.error is not None and info.value.error.code == "ValidationError"


@pytest.mark.asyncio
async def test_handshake_timeout(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim(validation_timeout_seconds=0.5)
    drive, receiver, token = await make_drive(sim), await make_receiver("slow"), await token_for(sim)
    status, _, err = await raw_graph(sim, "POST", "/subscriptions", token, subscription_body(drive["id"], receiver.url))
    assert status == 400
    assert err["error"]["code"] == "ValidationError"
    assert err["error"]["message"] == "Subscription validation request timed out."


@pytest.mark.asyncio
async def test_lifecycle_url_is_validated_separately(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    await graph.subscriptions.post(new_subscription(drive["id"], receiver.url, receiver.url))
    assert len(receiver.validations) == 2
    assert receiver.validations[0]["token"] != receiver.validations[1]["token"]


@pytest.mark.asyncio
async def test_a_duplicate_subscription_gets_a_new_id_and_both_are_notified(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    # GD concepts/change-notifications-delivery-webhooks.md: a unique id even for the same resource and URL.
    drive, receiver = await make_drive(sim), await make_receiver()
    first = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    second = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert first is not None and second is not None and first.id and second.id and first.id != second.id
    listed = await graph.subscriptions.get()
    assert listed is not None and {s.id for s in listed.value or []} == {first.id, second.id}
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "one.txt"})
    await receiver.wait_for(2)
    assert sorted(n["subscriptionId"] for n in receiver.notifications) == sorted([first.id, second.id])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("changeType", "created,updated", 400),
        ("clientState", "x" * 129, 400),
        ("resource", "me/drive/root", 400),
        ("resource", "drives/no-such-drive/root", 404),
        ("notificationUrl", "http://example.com/hook", 400),
        ("expirationDateTime", "2001-01-01T00:00:00Z", 400),
    ],
)
async def test_invalid_subscription_requests(
    sim: SimHandle, make_receiver: ReceiverFactory, field: str, value: str, status: int
) -> None:
    drive, receiver, token = await make_drive(sim), await make_receiver(), await token_for(sim)
    body = subscription_body(drive["id"], receiver.url, **{field: value})
    got, _, err = await raw_graph(sim, "POST", "/subscriptions", token, body)
    assert got == status, err
    assert set(err["error"]) == {"code", "message", "innerError"}
    assert receiver.validations == []


@pytest.mark.asyncio
async def test_renew_within_and_past_maximum(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    sub = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert sub is not None and sub.id
    item = graph.subscriptions.by_subscription_id(sub.id)
    renewed = await item.patch(Subscription(expiration_date_time=future(42000)))
    assert renewed is not None and renewed.expiration_date_time is not None
    assert renewed.expiration_date_time > future(41990)
    with pytest.raises(ODataError) as info:
        await item.patch(Subscription(expiration_date_time=future(42400)))
    assert info.value.response_status_code == 400 and info.value.error is not None
    assert "42300 minutes" in (info.value.error.message or "")


@pytest.mark.asyncio
async def test_delete_then_404_and_reauthorize(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver, token = await make_drive(sim), await make_receiver(), await token_for(sim)
    sub = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert sub is not None and sub.id
    status, _, _ = await raw_graph(sim, "POST", f"/subscriptions/{sub.id}/reauthorize", token)
    assert status == 204
    await graph.subscriptions.by_subscription_id(sub.id).reauthorize.post()
    status, headers, _ = await raw_graph(sim, "DELETE", f"/subscriptions/{sub.id}", token)
    assert status == 204 and headers["request-id"]
    with pytest.raises(ODataError) as info:
        await graph.subscriptions.by_subscription_id(sub.id).get()
    assert info.value.response_status_code == 404
    assert info.value.error is not None and info.value.error.code == "ResourceNotFound"
    status, _, _ = await raw_graph(sim, "DELETE", f"/subscriptions/{sub.id}", token)
    assert status == 404


@pytest.mark.asyncio
async def test_subscription_expires_with_clock(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    sub = await graph.subscriptions.post(new_subscription(drive["id"], receiver.url))
    assert sub is not None and sub.id
    await control(sim, "POST", "/clock", {"advanceSeconds": 61 * 60})
    with pytest.raises(ODataError) as info:
        await graph.subscriptions.by_subscription_id(sub.id).get()
    assert info.value.response_status_code == 404
    listed = await graph.subscriptions.get()
    assert listed is not None and listed.value == []


@pytest.mark.asyncio
async def test_subscription_list_pages(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim()
    token = await token_for(sim)
    receiver = await make_receiver()
    drives = [await make_drive(sim) for _ in range(101)]
    for d in drives:
        status, _, err = await raw_graph(sim, "POST", "/subscriptions", token, subscription_body(d["id"], receiver.url))
        assert status == 201, err
    _, _, page1 = await raw_graph(sim, "GET", "/subscriptions", token)
    assert len(page1["value"]) == 100
    _, _, page2 = await raw_graph(sim, "GET", page1["@odata.nextLink"], token)
    assert len(page2["value"]) == 1 and "@odata.nextLink" not in page2


@pytest.mark.asyncio
async def test_subscription_writes_are_throttled(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim(write_limit=2, write_window_seconds=20)
    token = await token_for(sim)
    statuses = []
    for _ in range(3):
        status, headers, body = await raw_graph(sim, "DELETE", "/subscriptions/nope", token)
        statuses.append(status)
    assert statuses == [404, 404, 429]
    assert body["error"]["code"] == "TooManyRequests"
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.asyncio
async def test_write_latency_delays_subscription_writes(make_sim: SimFactory) -> None:
    sim = await make_sim(write_latency_ms=300)
    token = await token_for(sim)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await raw_graph(sim, "DELETE", "/subscriptions/nope", token)
    assert status == 404 and loop.time() - started >= 0.3
    stats = await control(sim, "GET", "/stats")
    assert stats["subscriptionWrites"] == 1


# --------------------------------------------------------------------------- drives and delta


async def delta_all(graph: GraphServiceClient, drive_id: str, url: str | None = None) -> tuple[list[Any], str]:
    """Follow nextLinks with the SDK; return (items, deltaLink)."""
    root = graph.drives.by_drive_id(drive_id).items.by_drive_item_id("root")
    page = await (root.delta.with_url(url).get() if url else root.delta.get())
    items: list[Any] = []
    while True:
        assert page is not None
        items.extend(page.value or [])
        if page.odata_next_link:
            page = await root.delta.with_url(page.odata_next_link).get()
            continue
        assert page.odata_delta_link
        return items, page.odata_delta_link


@pytest.mark.asyncio
async def test_drive_lookup_by_id_user_and_site(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim, userId="user-1")
    site_drive = await make_drive(sim, siteId="contoso.sharepoint.com,abc,def")
    by_id = await graph.drives.by_drive_id(drive["id"]).get()
    assert by_id is not None and by_id.id == drive["id"] and by_id.drive_type == "business"
    by_user = await graph.users.by_user_id("user-1").drive.get()
    assert by_user is not None and by_user.id == drive["id"]
    by_site = await graph.sites.by_site_id("contoso.sharepoint.com,abc,def").drive.get()
    assert by_site is not None and by_site.id == site_drive["id"]
    root = await graph.drives.by_drive_id(drive["id"]).items.by_drive_item_id("root").get()
    assert root is not None and root.id == drive["rootId"] and root.root is not None


@pytest.mark.asyncio
async def test_delta_latest_then_changes(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "old.txt"})
    root = graph.drives.by_drive_id(drive["id"]).items.by_drive_item_id("root")
    latest = await root.delta.with_url(f"{sim.graph_url}/drives/{drive['id']}/root/delta?token=latest").get()
    assert latest is not None and latest.value == [] and latest.odata_delta_link
    folder = await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "docs", "folder": True})
    new = await control(
        sim, "POST", f"/drives/{drive['id']}/items", {"name": "new.txt", "parentId": folder["id"], "content": "hi"}
    )
    items, link = await delta_all(graph, drive["id"], latest.odata_delta_link)
    names = [i.name for i in items]
    # The new file and its ancestors (root, docs) appear once each, parents first.
    assert names == ["root", "docs", "new.txt"]
    assert items[2].id == new["id"] and items[2].file is not None
    assert items[2].parent_reference.id == folder["id"]
    items, _ = await delta_all(graph, drive["id"], link)
    assert items == []


@pytest.mark.asyncio
async def test_item_tags_change_like_onedrive(sim: SimHandle) -> None:
    drive = await make_drive(sim)
    base = f"/drives/{drive['id']}/items"
    created = await control(sim, "POST", base, {"name": "a.txt", "content": "1"})
    assert created["createdDateTime"] == created["lastModifiedDateTime"]
    renamed = await control(sim, "PATCH", f"{base}/{created['id']}", {"name": "b.txt"})
    assert renamed["eTag"] != created["eTag"] and renamed["cTag"] == created["cTag"]
    edited = await control(sim, "PATCH", f"{base}/{created['id']}", {"content": "2"})
    assert edited["eTag"] != renamed["eTag"] and edited["cTag"] != renamed["cTag"]


@pytest.mark.asyncio
async def test_delta_pages_with_small_page_size(make_sim: SimFactory) -> None:
    sim = await make_sim(page_size=4)
    drive = await make_drive(sim)
    await control(sim, "POST", f"/drives/{drive['id']}/items:bulk", {"count": 10})
    token = await token_for(sim)
    url: str | None = f"/drives/{drive['id']}/root/delta"
    pages, ids = 0, []
    while url:
        status, _, page = await raw_graph(sim, "GET", url, token)
        assert status == 200
        assert page["@odata.context"].endswith("$metadata#Collection(driveItem)")
        pages += 1
        ids += [i["id"] for i in page["value"]]
        url = page.get("@odata.nextLink")
        if url is None:
            assert page["@odata.deltaLink"].startswith(sim.graph_url)
    assert pages == 3 and len(ids) == 11 and len(set(ids)) == 11  # root + 10 files
    stats = await control(sim, "GET", "/stats")
    assert stats["drives"][drive["id"]] == {"deltaRuns": 1, "deltaRequests": 3, "seq": 10}


@pytest.mark.asyncio
async def test_delta_honours_maxpagesize(sim: SimHandle) -> None:
    drive = await make_drive(sim)
    await control(sim, "POST", f"/drives/{drive['id']}/items:bulk", {"count": 5})
    token = await token_for(sim)
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{sim.graph_url}/drives/{drive['id']}/root/delta",
            headers={"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=2"},
        ) as r,
    ):
        page = await r.json()
        assert r.headers["Preference-Applied"] == "odata.maxpagesize=2"
    assert len(page["value"]) == 2 and "@odata.nextLink" in page


@pytest.mark.asyncio
async def test_delta_reports_deleted_items(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    item = await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "gone.txt"})
    _, link = await delta_all(graph, drive["id"])
    await control(sim, "DELETE", f"/drives/{drive['id']}/items/{item['id']}")
    items, _ = await delta_all(graph, drive["id"], link)
    [tomb] = [i for i in items if i.id == item["id"]]
    assert tomb.deleted is not None and tomb.deleted.state == "deleted"
    assert tomb.name is None  # OneDrive for Business omits the name of deleted items
    full, _ = await delta_all(graph, drive["id"])
    assert item["id"] not in [i.id for i in full]


@pytest.mark.asyncio
async def test_delta_token_function_syntax_and_user_path(sim: SimHandle) -> None:
    drive = await make_drive(sim, userId="someone@contoso.com")
    token = await token_for(sim)
    _, _, first = await raw_graph(sim, "GET", "/users/someone@contoso.com/drive/root/delta", token)
    delta_token = parse_qs(urlsplit(first["@odata.deltaLink"]).query)["token"][0]
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "x.txt"})
    status, _, page = await raw_graph(
        sim, "GET", f"/drives/{drive['id']}/items/root/delta(token='{delta_token}')", token
    )
    assert status == 200 and [i["name"] for i in page["value"]] == ["root", "x.txt"]
    status, _, err = await raw_graph(sim, "GET", f"/drives/{drive['id']}/root/delta?token=garbage", token)
    assert status == 400 and err["error"]["code"] == "invalidRequest"


@pytest.mark.asyncio
async def test_sdk_delta_with_token(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    root = graph.drives.by_drive_id(drive["id"]).items.by_drive_item_id("root")
    latest = await root.delta_with_token("latest").get()
    assert latest is not None and latest.value == [] and latest.odata_delta_link
    delta_token = parse_qs(urlsplit(latest.odata_delta_link).query)["token"][0]
    item = await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "y.txt"})
    page = await root.delta_with_token(delta_token).get()
    assert page is not None and [i.id for i in page.value or []] == [drive["rootId"], item["id"]]


@pytest.mark.asyncio
async def test_delta_tokens_age_out_with_configured_lifetime(make_sim: SimFactory) -> None:
    sim = await make_sim(delta_token_lifetime_seconds=3600)
    drive = await make_drive(sim)
    token = await token_for(sim)
    _, _, first = await raw_graph(sim, "GET", f"/drives/{drive['id']}/root/delta", token)
    await control(sim, "POST", "/clock", {"advanceSeconds": 3700})
    status, headers, _ = await raw_graph(sim, "GET", first["@odata.deltaLink"], token)
    assert status == 410 and headers["Location"].endswith("/root/delta")


@pytest.mark.asyncio
async def test_stale_delta_token_answers_410(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    _, link = await delta_all(graph, drive["id"])
    await control(sim, "POST", f"/drives/{drive['id']}/expire-tokens")
    token = await token_for(sim)
    status, headers, err = await raw_graph(sim, "GET", link, token)
    assert status == 410
    assert err["error"]["code"] == "resyncRequired"
    assert err["error"]["innerError"]["code"] == "resyncChangesApplyDifferences"
    assert headers["Location"] == f"{sim.graph_url}/drives/{drive['id']}/root/delta"
    with pytest.raises(ODataError) as info:
        await delta_all(graph, drive["id"], link)
    assert info.value.response_status_code == 410
    items, _ = await delta_all(graph, drive["id"], headers["Location"])
    assert [i.id for i in items] == [drive["rootId"]]


# --------------------------------------------------------------------------- delivery


async def subscribe(
    sim: SimHandle, graph: GraphServiceClient, drive_id: str, url: str, lifecycle: str | None = None
) -> Subscription:
    """Create a subscription and return it."""
    sub = await graph.subscriptions.post(new_subscription(drive_id, url, lifecycle))
    assert sub is not None
    return sub


@pytest.mark.asyncio
async def test_change_notification_shape(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    sub = await subscribe(sim, graph, drive["id"], receiver.url)
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "a.txt"})
    await receiver.wait_for(1)
    [n] = receiver.notifications
    assert n["subscriptionId"] == sub.id and n["clientState"] == "s3cret"
    # As OneDrive's documented example: no changeType (a drive subscription allows only "updated").
    assert "changeType" not in n and n["resource"] == f"drives/{drive['id']}/root"
    assert n["tenantId"] == sim.config.tenant_id and n["subscriptionExpirationDateTime"]


@pytest.mark.asyncio
async def test_delivery_retries_after_503(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    await subscribe(sim, graph, drive["id"], receiver.url)
    receiver.fail_next = 2
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "a.txt"})
    await receiver.wait_for(1)
    assert receiver.posts == 3
    stats = (await control(sim, "GET", "/stats"))["delivery"]
    assert stats["failures"] == {"503": 2} and stats["successes"] == 1
    assert stats["itemsDelivered"] == 1 and stats["pending"] == 0


@pytest.mark.asyncio
async def test_delivery_gives_up_after_retry_window(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim(retry_for_seconds=0.3)
    receiver = await make_receiver()
    drive = await subscribed_drive(sim, receiver.url)
    receiver.fail_next = 1000
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "a.txt"})
    for _ in range(50):
        stats = (await control(sim, "GET", "/stats"))["delivery"]
        if stats["itemsDropped"]:
            break
        await asyncio.sleep(0.1)
    assert stats["itemsDropped"] == 1 and stats["pending"] == 0


@pytest.mark.asyncio
async def test_burst_is_batched_and_duplicated(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim(delivery_max_batch=10)
    receiver = await make_receiver()
    drive = await subscribed_drive(sim, receiver.url)
    await control(sim, "POST", "/delivery", {"duplicates": 2, "paused": True})
    await control(sim, "POST", f"/drives/{drive['id']}/items:bulk", {"count": 25})
    assert (await control(sim, "GET", "/stats"))["delivery"]["pending"] == 25
    await control(sim, "POST", "/delivery", {"paused": False})
    await receiver.wait_for(50)
    assert receiver.posts == 6  # batches of 10, 10, 5, each sent twice
    stats = (await control(sim, "GET", "/stats"))["delivery"]
    assert stats["itemsDelivered"] == 25 and stats["duplicatesSent"] == 3


@pytest.mark.asyncio
async def test_lifecycle_events_are_delivered(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, hooks, life = await make_drive(sim), await make_receiver(), await make_receiver(query="")
    sub = await subscribe(sim, graph, drive["id"], hooks.url, life.url)
    await control(sim, "POST", f"/subscriptions/{sub.id}/lifecycle", {"event": "reauthorizationRequired"})
    await life.wait_for(1)
    assert life.notifications[0] == {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": life.notifications[0]["subscriptionExpirationDateTime"],
        "tenantId": sim.config.tenant_id,
        "clientState": "s3cret",
        "lifecycleEvent": "reauthorizationRequired",
    }
    await control(sim, "POST", f"/subscriptions/{sub.id}/lifecycle", {"event": "subscriptionRemoved"})
    await life.wait_for(2)
    assert life.notifications[1]["lifecycleEvent"] == "subscriptionRemoved"
    with pytest.raises(ODataError):
        await graph.subscriptions.by_subscription_id(sub.id or "").get()


@pytest.mark.asyncio
async def test_silent_removal_stops_notifications(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    sub = await subscribe(sim, graph, drive["id"], receiver.url)
    await control(sim, "DELETE", f"/subscriptions/{sub.id}")
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "a.txt"})
    await asyncio.sleep(0.3)
    assert receiver.notifications == []


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_injected_429_has_retry_after(sim: SimHandle) -> None:
    drive = await make_drive(sim)
    token = await token_for(sim)
    await control(
        sim, "POST", "/faults", {"method": "GET", "path": r"/root/delta", "status": 429, "count": 1, "retryAfter": 3}
    )
    status, headers, err = await raw_graph(sim, "GET", f"/drives/{drive['id']}/root/delta", token)
    assert status == 429 and headers["Retry-After"] == "3"
    assert err["error"]["code"] == "TooManyRequests"
    status, _, _ = await raw_graph(sim, "GET", f"/drives/{drive['id']}/root/delta", token)
    assert status == 200


@pytest.mark.asyncio
async def test_sdk_retries_injected_503(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    await control(sim, "POST", "/faults", {"path": r"^/drives/", "status": 503, "count": 1, "retryAfter": 1})
    items, _ = await delta_all(graph, drive["id"])
    assert [i.id for i in items] == [drive["rootId"]]
    stats = await control(sim, "GET", "/stats")
    assert stats["faultsInjected"] == 1


# --------------------------------------------------------------------------- large drives, restore, moves


async def raw_delta_all(sim: SimHandle, token: str, url: str | None = None) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextLinks with aiohttp: (items, deltaLink, pages)."""
    link: str | None = url
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        status, _, page = await raw_graph(sim, "GET", link or "", token)
        assert status == 200, page
        pages += 1
        items += page["value"]
        link = page.get("@odata.nextLink")
        if link is None:
            return items, page["@odata.deltaLink"], pages


@pytest.mark.asyncio
async def test_generated_drive_pages_each_item_once(sim: SimHandle) -> None:
    drive, token = await make_drive(sim), await token_for(sim)
    base = f"/drives/{drive['id']}"
    _, _, latest = await raw_graph(sim, "GET", f"{base}/root/delta?token=latest", token)
    made = await control(sim, "POST", f"{base}/items:generate", {"count": 5000, "sizeBytes": 10})
    assert made["count"] == 5000 and made["folders"] == 5 and "ids" not in made
    assert len(made["sampleIds"]) == 10 and len(made["folderIds"]) == 5
    items, link, pages = await raw_delta_all(sim, token, f"{base}/root/delta")
    ids = [i["id"] for i in items]
    assert pages == 26 and len(ids) == len(set(ids)) == 5006  # files, folders and the root
    files = [i for i in items if "file" in i]
    folders = [i for i in items if "folder" in i and "root" not in i]
    assert len(files) == 5000 and {f["id"] for f in folders} == set(made["folderIds"])
    assert ids[0] == drive["rootId"] and set(ids[1:6]) == set(made["folderIds"])  # parents first
    assert {f["folder"]["childCount"] for f in folders} == {1000} and {f["size"] for f in folders} == {10000}
    assert all(f["size"] == 10 and f["file"]["hashes"]["quickXorHash"] for f in files)
    root = await control(sim, "GET", f"{base}/items/root")
    assert root["folder"]["childCount"] == 5 and root["size"] == 50000
    # The token from before the generation sees all of it; the next change is small again.
    changed, _, _ = await raw_delta_all(sim, token, latest["@odata.deltaLink"])
    assert len(changed) == 5006
    await control(sim, "PATCH", f"{base}/items/{made['sampleIds'][0]}", {"name": "renamed.txt"})
    changed, _, _ = await raw_delta_all(sim, token, link)
    assert [i["id"] for i in changed] == [drive["rootId"], made["folderIds"][0], made["sampleIds"][0]]
    listed = await control(sim, "GET", "/drives")
    assert [d["items"] for d in listed["value"]] == [5006]


@pytest.mark.asyncio
async def test_generate_notifies_only_when_asked(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim()
    receiver = await make_receiver()
    drive = await subscribed_drive(sim, receiver.url)
    made = await control(sim, "POST", f"/drives/{drive['id']}/items:generate", {"count": 30, "folders": 0})
    assert made["folders"] == 0 and made["folderIds"] == []
    await asyncio.sleep(0.2)
    assert receiver.notifications == []
    await control(sim, "POST", f"/drives/{drive['id']}/items:generate", {"count": 20, "folders": 2, "notify": True})
    await receiver.wait_for(22)
    root = await control(sim, "GET", f"/drives/{drive['id']}/items/root")
    assert root["folder"]["childCount"] == 32


@pytest.mark.asyncio
async def test_simcontrol_generate_move_restore(sim: SimHandle) -> None:
    async with SimControl(sim.control_url) as ctl:
        drive = await ctl.create_drive()
        made = await ctl.generate_items(drive["id"], 50, folders=2)
        assert made["count"] == 50 and made["folders"] == 2
        moved = await ctl.move_item(drive["id"], made["sampleIds"][0], made["folderIds"][1])
        assert moved["parentReference"]["id"] == made["folderIds"][1]
        await ctl.delete_item(drive["id"], made["folderIds"][0])
        restored = await ctl.restore_item(drive["id"], made["folderIds"][0])
        assert restored["restored"] == 25 and restored["folder"]["childCount"] == 24
        year_ago = datetime.now(UTC) - timedelta(days=365)
        old = await ctl.create_item(drive["id"], "old.txt", "x", created=year_ago, parent_id=made["folderIds"][1])
        assert old["createdDateTime"] == year_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert old["parentReference"]["id"] == made["folderIds"][1]


@pytest.mark.asyncio
async def test_restore_shows_deleted_then_live(sim: SimHandle) -> None:
    drive, token = await make_drive(sim), await token_for(sim)
    base = f"/drives/{drive['id']}/items"
    folder = await control(sim, "POST", base, {"name": "docs", "folder": True})
    doc = await control(sim, "POST", base, {"name": "a.txt", "parentId": folder["id"], "content": "abc"})
    _, link, _ = await raw_delta_all(sim, token, f"/drives/{drive['id']}/root/delta")
    assert (await control(sim, "DELETE", f"{base}/{folder['id']}")) == {"deleted": 2}
    gone, link, _ = await raw_delta_all(sim, token, link)
    tombs = {i["id"]: i for i in gone if "deleted" in i}
    assert set(tombs) == {folder["id"], doc["id"]}
    restored = await control(sim, "POST", f"{base}/{folder['id']}/restore")
    assert restored["restored"] == 2 and restored["folder"]["childCount"] == 1 and restored["size"] == 3
    back, _, _ = await raw_delta_all(sim, token, link)
    live = {i["id"]: i for i in back}
    for original in (folder, doc):
        item = live[original["id"]]
        assert "deleted" not in item and item["name"] == original["name"]
        assert item["eTag"] not in (original["eTag"], tombs[original["id"]]["eTag"])
    assert (await control(sim, "GET", f"{base}/{doc['id']}"))["name"] == "a.txt"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.control_url}{base}/{doc['id']}/restore") as r:
            assert r.status == 409  # not deleted
        await control(sim, "DELETE", f"{base}/{doc['id']}")
        await control(sim, "DELETE", f"{base}/{folder['id']}")
        async with s.post(f"{sim.control_url}{base}/{doc['id']}/restore") as r:
            assert r.status == 409  # its folder is deleted: restore that first
        async with s.post(f"{sim.control_url}{base}/nope/restore") as r:
            assert r.status == 404
    # The folder comes back alone: the file was deleted on its own, before it.
    assert (await control(sim, "POST", f"{base}/{folder['id']}/restore"))["restored"] == 1


@pytest.mark.asyncio
async def test_move_bumps_etag_and_touches_both_folders(sim: SimHandle) -> None:
    drive, token = await make_drive(sim), await token_for(sim)
    base = f"/drives/{drive['id']}/items"
    src = await control(sim, "POST", base, {"name": "src", "folder": True})
    dst = await control(sim, "POST", base, {"name": "dst", "folder": True})
    doc = await control(sim, "POST", base, {"name": "a.txt", "parentId": src["id"], "content": "abcd"})
    _, link, _ = await raw_delta_all(sim, token, f"/drives/{drive['id']}/root/delta")
    moved = await control(sim, "PATCH", f"{base}/{doc['id']}", {"parentId": dst["id"]})
    assert moved["eTag"] != doc["eTag"] and moved["cTag"] == doc["cTag"]
    assert moved["parentReference"]["id"] == dst["id"] and moved["parentReference"]["path"] == "/drive/root:/dst"
    assert moved["lastModifiedDateTime"] == doc["lastModifiedDateTime"]
    changed, _, _ = await raw_delta_all(sim, token, link)
    assert changed[0]["id"] == drive["rootId"]
    assert {i["id"] for i in changed} == {drive["rootId"], src["id"], dst["id"], doc["id"]}
    by_id = {i["id"]: i for i in changed}
    assert by_id[doc["id"]]["parentReference"]["id"] == dst["id"]
    assert by_id[src["id"]]["folder"]["childCount"] == 0 and by_id[src["id"]]["size"] == 0
    assert by_id[dst["id"]]["folder"]["childCount"] == 1 and by_id[dst["id"]]["size"] == 4
    async with aiohttp.ClientSession() as s:
        async with s.patch(f"{sim.control_url}{base}/{dst['id']}", json={"parentId": dst["id"]}) as r:
            assert r.status == 400  # into itself
        async with s.patch(f"{sim.control_url}{base}/{doc['id']}", json={"parentId": "nope"}) as r:
            assert r.status == 404


@pytest.mark.asyncio
async def test_created_date_time_is_honoured(sim: SimHandle, graph: GraphServiceClient) -> None:
    drive = await make_drive(sim)
    base = f"/drives/{drive['id']}/items"
    created = await control(
        sim,
        "POST",
        base,
        {
            "name": "old.docx",
            "createdDateTime": "2025-01-02T03:04:05.1234567Z",
            "lastModifiedDateTime": "2025-02-03T04:05:06Z",
        },
    )
    assert created["createdDateTime"] == created["fileSystemInfo"]["createdDateTime"] == "2025-01-02T03:04:05Z"
    assert created["lastModifiedDateTime"] == "2025-02-03T04:05:06Z"
    only_created = await control(sim, "POST", base, {"name": "b.txt", "createdDateTime": "2024-06-01T00:00:00+02:00"})
    assert only_created["createdDateTime"] == "2024-05-31T22:00:00Z"
    assert only_created["lastModifiedDateTime"] > "2025"
    items, _ = await delta_all(graph, drive["id"])
    [seen] = [i for i in items if i.id == created["id"]]
    assert seen.created_date_time == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{sim.control_url}{base}", json={"name": "x", "createdDateTime": "yesterday"}) as r,
    ):
        assert r.status == 400


@pytest.mark.asyncio
async def test_evicted_run_answers_410(sim: SimHandle) -> None:
    sim.state.cursors.max_ids = 30
    drive, token = await make_drive(sim), await token_for(sim)
    await control(sim, "POST", f"/drives/{drive['id']}/items:generate", {"count": 20, "folders": 0})
    url = f"/drives/{drive['id']}/root/delta?$top=5"
    _, _, first = await raw_graph(sim, "GET", url, token)
    await raw_graph(sim, "GET", url, token)  # same drive state: the id list is shared
    assert sim.state.cursors.held == 21 and len(sim.state.cursors) == 2
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "one-more.txt"})
    _, _, newer = await raw_graph(sim, "GET", url, token)
    assert sim.state.cursors.held == 22 and len(sim.state.cursors) == 1
    status, headers, _ = await raw_graph(sim, "GET", first["@odata.nextLink"], token)
    assert status == 410 and headers["Location"].endswith("/root/delta")
    status, _, page = await raw_graph(sim, "GET", newer["@odata.nextLink"], token)
    assert status == 200 and len(page["value"]) == 5  # $top is carried over, as Graph keeps it in the link


# --------------------------------------------------------------------------- outage faults


@pytest.mark.asyncio
async def test_drop_discards_notifications_but_delta_shows_changes(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, hooks, life = await make_drive(sim), await make_receiver(), await make_receiver(query="")
    sub = await subscribe(sim, graph, drive["id"], hooks.url, life.url)
    _, link = await delta_all(graph, drive["id"])
    answer = await control(sim, "POST", "/delivery", {"drop": True})
    assert answer["drop"] is True
    item = await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "lost.txt"})
    await control(sim, "POST", f"/drives/{drive['id']}/items:bulk", {"count": 3})
    await control(sim, "POST", f"/subscriptions/{sub.id}/lifecycle", {"event": "missed"})
    await life.wait_for(1)  # lifecycle notifications still go: they report the loss
    await asyncio.sleep(0.2)
    assert hooks.notifications == []
    stats = (await control(sim, "GET", "/stats"))["delivery"]
    assert stats["itemsDropped"] == 4 and stats["itemsDelivered"] == 1 and stats["pending"] == 0
    items, _ = await delta_all(graph, drive["id"], link)
    assert item["id"] in [i.id for i in items]
    await control(sim, "POST", "/delivery", {"drop": False})
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "kept.txt"})
    await hooks.wait_for(1)


@pytest.mark.asyncio
async def test_delay_holds_each_batch(make_sim: SimFactory, make_receiver: ReceiverFactory) -> None:
    sim = await make_sim()
    receiver = await make_receiver()
    drive = await subscribed_drive(sim, receiver.url)
    await control(sim, "POST", "/delivery", {"delaySeconds": 0.6})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "late.txt"})
    await asyncio.sleep(0.3)
    assert receiver.notifications == [] and (await control(sim, "GET", "/stats"))["delivery"]["pending"] == 1
    await receiver.wait_for(1)
    assert loop.time() - started >= 0.6
    await control(sim, "POST", "/reset")
    assert (await control(sim, "POST", "/delivery", {}))["delaySeconds"] == 0


@pytest.mark.asyncio
async def test_delta_lag_hides_fresh_changes(
    sim: SimHandle, graph: GraphServiceClient, make_receiver: ReceiverFactory
) -> None:
    drive, receiver = await make_drive(sim), await make_receiver()
    await subscribe(sim, graph, drive["id"], receiver.url)
    _, link = await delta_all(graph, drive["id"])
    await control(sim, "POST", "/delivery", {"deltaLagSeconds": 30})
    item = await control(sim, "POST", f"/drives/{drive['id']}/items", {"name": "early-news.txt"})
    await receiver.wait_for(1)  # the notification goes at once
    items, same = await delta_all(graph, drive["id"], link)
    assert items == []
    full, _ = await delta_all(graph, drive["id"])
    assert item["id"] in [i.id for i in full]  # a full enumeration shows the current state
    await control(sim, "POST", "/clock", {"advanceSeconds": 31})
    items, _ = await delta_all(graph, drive["id"], same)
    assert [i.id for i in items] == [drive["rootId"], item["id"]]


# --------------------------------------------------------------------------- process


@pytest.mark.asyncio
async def test_cli_prints_start_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.graphsim",
        "--port",
        "0",
        "--tls-port",
        "0",
        "--state-dir",
        str(tmp_path),
        "--client-secret",
        "other-secret",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        assert info["client_secret"] == "other-secret"
        assert info["ca_file"] == str(tmp_path / "ca.pem") and await asyncio.to_thread(os.path.exists, info["ca_file"])
        assert info["graph_url"].startswith("http://127.0.0.1:")
        assert info["control_url"].endswith("/_sim")
        assert info["authority"].startswith("https://localhost:")
        async with aiohttp.ClientSession() as s, s.get(info["control_url"] + "/stats") as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
        _, err = await proc.communicate()
    assert code == 0
    assert b"other-secret" not in err


# --------------------------------------------------------------------------- Graph's documented details


@pytest.mark.asyncio
async def test_parent_reference_paths_are_percent_encoded(sim: SimHandle) -> None:
    # GD api-reference/v1.0/resources/itemreference.md: "Percent-encoded path" (/drive/root:/Documents/my%20file.docx)
    drive, token = await make_drive(sim), await token_for(sim)
    base = f"/drives/{drive['id']}/items"
    folder = await control(sim, "POST", base, {"name": "My Folder", "folder": True})
    inner = await control(sim, "POST", base, {"name": "Ünïcode #1", "folder": True, "parentId": folder["id"]})
    doc = await control(sim, "POST", base, {"name": "a b.txt", "parentId": inner["id"]})
    status, _, item = await raw_graph(sim, "GET", f"{base}/{doc['id']}", token)
    assert status == 200
    assert item["parentReference"]["path"] == "/drive/root:/My%20Folder/%C3%9Cn%C3%AFcode%20%231"
    assert item["name"] == "a b.txt"
    changed, _, _ = await raw_delta_all(sim, token, f"/drives/{drive['id']}/root/delta")
    # driveitem-delta.md: parentReference in delta carries no path at all.
    assert all("path" not in i["parentReference"] for i in changed)


@pytest.mark.asyncio
async def test_delta_links_keep_top(sim: SimHandle) -> None:
    drive, token = await make_drive(sim), await token_for(sim)
    await control(sim, "POST", f"/drives/{drive['id']}/items:bulk", {"count": 4})
    url: str | None = f"/drives/{drive['id']}/root/delta?$top=2"
    sizes: list[int] = []
    while url:
        status, _, page = await raw_graph(sim, "GET", url, token)
        assert status == 200
        sizes.append(len(page["value"]))
        url = page.get("@odata.nextLink")
    assert sizes == [2, 2, 1]  # root + 4 files, two a page on every page, not only the first
    assert parse_qs(urlsplit(page["@odata.deltaLink"]).query)["$top"] == ["2"]


def rich_body(resource: str, url: str, minutes: float, **fields: Any) -> dict[str, Any]:
    """A POST /subscriptions body for a Teams resource with resource data."""
    from devtools.graphsim.rich import make_certificate

    body = {
        "changeType": "created,updated",
        "notificationUrl": url,
        "resource": resource,
        "includeResourceData": True,
        "encryptionCertificate": make_certificate().public_base64,
        "encryptionCertificateId": "cert-1",
        "expirationDateTime": future(minutes).isoformat(),
        "clientState": "s3cret",
    }
    return body | fields


@pytest.mark.asyncio
@pytest.mark.parametrize("resource", ["chats/getAllMessages", "teams/getAllMessages"])
async def test_a_teams_subscription_past_an_hour_needs_a_lifecycle_url(
    sim: SimHandle, make_receiver: ReceiverFactory, resource: str
) -> None:
    # GD concepts/teams-changenotifications-chatmessage.md: past 1 hour, lifecycleNotificationUrl is required.
    receiver, token = await make_receiver(), await token_for(sim)
    status, _, err = await raw_graph(sim, "POST", "/subscriptions", token, rich_body(resource, receiver.url, 120))
    assert status == 400 and "lifecycleNotificationUrl is a required property" in err["error"]["message"]
    assert receiver.validations == []
    status, _, made = await raw_graph(sim, "POST", "/subscriptions", token, rich_body(resource, receiver.url, 55))
    assert status == 201, made
    body = rich_body(resource, receiver.url, 120, lifecycleNotificationUrl=receiver.url)
    status, _, made = await raw_graph(sim, "POST", "/subscriptions", token, body)
    assert status == 201 and made["lifecycleNotificationUrl"] == receiver.url


@pytest.mark.asyncio
@pytest.mark.parametrize("resource", ["chats/getAllMessages?model=B", "teams/getAllMessages?model=A"])
async def test_the_licensing_model_stays_in_the_subscribed_resource(
    sim: SimHandle, make_receiver: ReceiverFactory, resource: str
) -> None:
    receiver, token = await make_receiver(), await token_for(sim)
    status, _, made = await raw_graph(sim, "POST", "/subscriptions", token, rich_body(resource, receiver.url, 55))
    assert status == 201 and made["resource"] == resource
    status, _, listed = await raw_graph(sim, "GET", "/subscriptions", token)
    assert [s["resource"] for s in listed["value"]] == [resource]
    assert listed["value"][0]["clientState"] is None  # GD subscription-list.md: never returned


@pytest.mark.asyncio
async def test_a_rich_subscription_takes_a_new_certificate_by_patch(
    sim: SimHandle, make_receiver: ReceiverFactory
) -> None:
    # GD concepts/change-notifications-with-resource-data.md, "Rotating keys": PATCH the certificate and its id.
    from devtools.graphsim.rich import make_certificate

    receiver, token = await make_receiver(), await token_for(sim)
    _, _, made = await raw_graph(
        sim, "POST", "/subscriptions", token, rich_body("chats/getAllMessages", receiver.url, 55)
    )
    chat = await control(sim, "POST", "/chats", {})
    new = {"encryptionCertificate": make_certificate().public_base64, "encryptionCertificateId": "cert-2"}
    status, _, err = await raw_graph(
        sim, "PATCH", f"/subscriptions/{made['id']}", token, {"encryptionCertificate": "x"}
    )
    assert status == 400, err
    status, _, patched = await raw_graph(sim, "PATCH", f"/subscriptions/{made['id']}", token, new)
    assert status == 200 and patched["encryptionCertificateId"] == "cert-2"
    assert patched["expirationDateTime"] == made["expirationDateTime"]
    await control(sim, "POST", f"/chats/{chat['id']}/messages", {"content": "after the rotation"})
    await receiver.wait_for(1)
    assert receiver.notifications[0]["encryptedContent"]["encryptionCertificateId"] == "cert-2"
