"""Functional tests of the Graph simulator's tenants (devtools.graphsim tenants.py, consent.py).

Each test starts its own simulator in-process and talks to it over HTTP with azure-identity
and aiohttp, as the function app would: tokens per tenant authority, Graph routed by the
token's ``tid``, per-tenant data and notifications, admin consent, revoked consent and storms.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import ClientSecretCredential

from devtools.graphsim.config import SimConfig
from devtools.graphsim.rich import make_certificate
from devtools.graphsim.server import SimHandle, start

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
TENANT_C = "cccccccc-0000-4000-8000-00000000000c"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[SimHandle]:
    """A simulator with tenant B consented beside the home tenant."""
    handle = await start(SimConfig(retry_base_seconds=0.05, retry_max_seconds=0.2, validation_timeout_seconds=2.0))
    await control(handle, "POST", "/tenants", {"tenant": TENANT_B})
    yield handle
    await handle.close()


class Receiver:
    """A webhook endpoint that answers validations and records notifications."""

    def __init__(self) -> None:
        self.url = ""
        self.batches: list[dict[str, Any]] = []
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            return web.Response(text=token, content_type="text/plain")
        self.batches.append(await request.json())
        self.got.set()
        return web.Response(status=202)

    async def wait(self, count: int = 1) -> list[dict[str, Any]]:
        async def loop() -> None:
            while len(self.items()) < count:
                self.got.clear()
                await self.got.wait()

        await asyncio.wait_for(loop(), 10)
        return self.items()

    def items(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches for item in batch["value"]]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/api/notify", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/notify"
    yield found
    await runner.cleanup()


async def control(sim: SimHandle, method: str, path: str, body: Any = None, tenant: str | None = None) -> Any:
    """Call the control API (for ``tenant``'s data); assert success; its JSON."""
    query = f"?{urlencode({'tenant': tenant})}" if tenant else ""
    async with aiohttp.ClientSession() as s, s.request(method, sim.control_url + path + query, json=body) as r:
        assert r.status < 400, await r.text()
        return await r.json()


def credential(sim: SimHandle, tenant: str, **options: Any) -> ClientSecretCredential:
    """azure-identity's async secret credential against the simulator's authority for ``tenant``."""
    return ClientSecretCredential(
        tenant,
        sim.config.client_id,
        sim.config.client_secret,
        authority=sim.authority,
        disable_instance_discovery=True,
        connection_verify=sim.ca_file,
        **options,
    )


async def token_for(sim: SimHandle, tenant: str) -> str:
    cred = credential(sim, tenant)
    try:
        return (await cred.get_token(GRAPH_SCOPE)).token
    finally:
        await cred.close()


async def raw_token(sim: SimHandle, tenant: str) -> tuple[int, dict[str, Any]]:
    """POST the client-credentials form to ``tenant``'s token endpoint: (status, JSON)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.config.client_id,
        "client_secret": sim.config.client_secret,
        "scope": GRAPH_SCOPE,
    }
    url = f"{sim.authority}/{tenant}/oauth2/v2.0/token"
    async with aiohttp.ClientSession() as s, s.post(url, data=form, ssl=False) as r:
        return r.status, await r.json()


async def graph(
    sim: SimHandle, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"}
    url = path if path.startswith("http") else sim.graph_url + path
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, dict(r.headers), json.loads(text) if text else None


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(minutes=60)).isoformat()


# --------------------------------------------------------------------------- tokens


async def test_each_tenant_authority_issues_tokens_of_its_own_tenant(sim: SimHandle) -> None:
    home, other = claims(await token_for(sim, sim.config.tenant_id)), claims(await token_for(sim, TENANT_B))
    assert home["tid"] == sim.config.tenant_id and home["iss"] == f"https://sts.windows.net/{sim.config.tenant_id}/"
    assert other["tid"] == TENANT_B and other["iss"] == f"https://sts.windows.net/{TENANT_B}/"
    assert other["appid"] == home["appid"] == sim.config.client_id
    async with aiohttp.ClientSession() as s:
        url = f"{sim.authority}/{TENANT_B}/v2.0/.well-known/openid-configuration"
        async with s.get(url, ssl=False) as r:
            doc = await r.json()
    assert doc["issuer"] == f"{sim.authority}/{TENANT_B}/v2.0"
    assert doc["token_endpoint"] == f"{sim.authority}/{TENANT_B}/oauth2/v2.0/token"


async def test_azure_identity_gets_another_tenants_token_with_additionally_allowed_tenants(sim: SimHandle) -> None:
    # What a multi-tenant app does: one credential, a token per tenant (get_token's tenant_id).
    cred = credential(sim, sim.config.tenant_id, additionally_allowed_tenants=["*"])
    try:
        other = await cred.get_token(GRAPH_SCOPE, tenant_id=TENANT_B)
        home = await cred.get_token(GRAPH_SCOPE)
    finally:
        await cred.close()
    assert claims(other.token)["tid"] == TENANT_B
    assert claims(home.token)["tid"] == sim.config.tenant_id
    status, _, _ = await graph(sim, "GET", "/subscriptions", other.token)
    assert status == 200


@pytest.mark.parametrize(
    ("setup", "status", "error", "code", "words"),
    [
        (None, 400, "invalid_request", 90002, "not found"),
        ({"consented": False}, 400, "invalid_grant", 65001, "has not consented to use the application"),
        ({"revoke": 65001}, 400, "invalid_grant", 65001, "has not consented to use the application"),
        ({"revoke": 7000112}, 400, "unauthorized_client", 7000112, "is disabled"),
        ({"revoke": 700016}, 400, "unauthorized_client", 700016, "was not found in the directory"),
    ],
    ids=["unknown", "never-consented", "revoked", "app-disabled", "app-deleted"],
)
async def test_a_tenant_without_consent_gets_entras_error_until_restored(
    sim: SimHandle, setup: dict[str, Any] | None, status: int, error: str, code: int, words: str
) -> None:
    if setup is not None:
        await control(sim, "POST", "/tenants", {"tenant": TENANT_C, "consented": "consented" not in setup})
    if setup and "revoke" in setup:
        await control(sim, "POST", f"/tenants/{TENANT_C}/revoke", {"code": setup["revoke"]})
    got, body = await raw_token(sim, TENANT_C)
    assert (got, body["error"], body["error_codes"]) == (status, error, [code])
    assert body["error_description"].startswith(f"AADSTS{code}: ") and words in body["error_description"]
    cred = credential(sim, TENANT_C)
    with pytest.raises(ClientAuthenticationError, match=f"AADSTS{code}"):
        await cred.get_token(GRAPH_SCOPE)
    await cred.close()
    assert (await raw_token(sim, TENANT_B))[0] == 200  # another tenant is not touched
    if setup is None:
        return
    await control(sim, "POST", f"/tenants/{TENANT_C}/restore")
    got, body = await raw_token(sim, TENANT_C)
    assert got == 200 and claims(body["access_token"])["tid"] == TENANT_C


async def test_graph_refuses_the_tokens_of_a_revoked_tenant_and_takes_them_back_once_restored(sim: SimHandle) -> None:
    token = await token_for(sim, TENANT_B)
    await control(sim, "POST", f"/tenants/{TENANT_B}/revoke", {"code": 65001})
    status, _, body = await graph(sim, "GET", "/users/delta", token)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    home_status, _, _ = await graph(sim, "GET", "/users/delta", await token_for(sim, sim.config.tenant_id))
    assert home_status == 200
    await control(sim, "POST", f"/tenants/{TENANT_B}/restore")
    assert (await graph(sim, "GET", "/users/delta", token))[0] == 200


async def test_a_token_without_a_tenant_is_refused(sim: SimHandle) -> None:
    # Signed by the simulator's own key (a real signature), but with no tid: Graph answers 401.
    good = claims(await token_for(sim, TENANT_B))
    forged = {k: v for k, v in good.items() if k != "tid"}
    key = sim.state.issuer._key  # the simulator's signing key: only its tid is missing
    token = jwt.encode(forged, key, algorithm="RS256", headers={"kid": sim.state.issuer.kid})
    status, _, body = await graph(sim, "GET", "/users/delta", token)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"


# --------------------------------------------------------------------------- data and notifications


async def test_equal_resource_paths_in_two_tenants_never_meet(sim: SimHandle) -> None:
    home = sim.config.tenant_id
    await control(sim, "POST", "/users", {"id": "u-home", "displayName": "Home user"})
    await control(sim, "POST", "/users", {"id": "u-b", "displayName": "B user"}, tenant=TENANT_B)
    for tenant in (home, TENANT_B):
        await control(sim, "POST", "/drives", {"id": "same-drive"}, tenant=tenant)
        await control(sim, "POST", "/drives/same-drive/items", {"name": f"{tenant}.txt"}, tenant=tenant)
    seen: dict[str, tuple[list[str], list[str]]] = {}
    for tenant in (home, TENANT_B):
        token = await token_for(sim, tenant)
        status, _, users = await graph(sim, "GET", "/users/delta", token)
        assert status == 200
        status, _, items = await graph(sim, "GET", "/drives/same-drive/root/delta", token)
        assert status == 200
        seen[tenant] = ([u["id"] for u in users["value"]], [i["name"] for i in items["value"] if "file" in i])
    assert seen[home] == (["u-home"], [f"{home}.txt"])
    assert seen[TENANT_B] == (["u-b"], [f"{TENANT_B}.txt"])
    listed = await control(sim, "GET", "/drives", tenant=TENANT_B)
    assert [d["id"] for d in listed["value"]] == ["same-drive"]


async def test_the_control_api_refuses_an_unknown_tenant(sim: SimHandle) -> None:
    url = f"{sim.control_url}/users?tenant={TENANT_C}"
    async with aiohttp.ClientSession() as s, s.post(url, json={"displayName": "x"}) as r:
        assert r.status == 404 and (await r.json()) == {"error": "no such tenant"}


async def test_a_subscription_in_tenant_b_notifies_with_tenant_b(sim: SimHandle, receiver: Receiver) -> None:
    await control(sim, "POST", "/drives", {"id": "drive-b"}, tenant=TENANT_B)
    await control(sim, "POST", "/drives", {"id": "drive-b"})  # the same id at home: never notified
    body = {
        "changeType": "updated",
        "notificationUrl": receiver.url,
        "resource": "drives/drive-b/root",
        "expirationDateTime": in_an_hour(),
        "clientState": "s3cret",
    }
    token = await token_for(sim, TENANT_B)
    status, _, made = await graph(sim, "POST", "/subscriptions", token, body)
    assert status == 201, made
    home_token = await token_for(sim, sim.config.tenant_id)
    status, _, home_list = await graph(sim, "GET", "/subscriptions", home_token)
    assert status == 200 and home_list["value"] == []  # subscriptions are per tenant
    await control(sim, "POST", "/drives/drive-b/items", {"name": "home.txt"})
    await control(sim, "POST", "/drives/drive-b/items", {"name": "b.txt"}, tenant=TENANT_B)
    (item,) = await receiver.wait(1)
    assert item["tenantId"] == TENANT_B and item["subscriptionId"] == made["id"]
    await asyncio.sleep(0.2)
    assert len(receiver.items()) == 1


async def test_rich_notifications_of_tenant_b_carry_tenant_bs_validation_tokens(
    sim: SimHandle, receiver: Receiver
) -> None:
    await control(sim, "POST", "/chats", {"id": "chat-b"}, tenant=TENANT_B)
    body = {
        "changeType": "created",
        "notificationUrl": receiver.url,
        "resource": "chats/getAllMessages",
        "includeResourceData": True,
        "encryptionCertificate": make_certificate().public_base64,
        "encryptionCertificateId": "cert-1",
        "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=50)).isoformat(),
        "clientState": "s3cret",
    }
    status, _, made = await graph(sim, "POST", "/subscriptions", await token_for(sim, TENANT_B), body)
    assert status == 201, made
    for version in (1, 2):
        await control(sim, "POST", "/rich", {"tokenVersion": version})
        await control(sim, "POST", "/chats/chat-b/messages", {"content": f"hello {version}"}, tenant=TENANT_B)
        await receiver.wait(version)
        (token,) = receiver.batches[-1]["validationTokens"]
        issued = claims(token)
        issuer = (
            f"https://sts.windows.net/{TENANT_B}/"
            if version == 1
            else f"https://login.microsoftonline.com/{TENANT_B}/v2.0"
        )
        assert (issued["tid"], issued["iss"]) == (TENANT_B, issuer)
        assert receiver.items()[-1]["tenantId"] == TENANT_B


# --------------------------------------------------------------------------- admin consent


async def consent_request(sim: SimHandle, **params: str) -> tuple[int, dict[str, list[str]], str]:
    """GET the admin consent endpoint without following the redirect: (status, redirect query, body)."""
    query = {
        "client_id": sim.config.client_id,
        "scope": GRAPH_SCOPE,
        "redirect_uri": "https://app.example/api/consent?x=1",
        "state": "st-123",
    } | params
    query = {k: v for k, v in query.items() if v != ""}
    url = f"{sim.authority}/organizations/v2.0/adminconsent?{urlencode(query)}"
    async with aiohttp.ClientSession() as s, s.get(url, ssl=False, allow_redirects=False) as r:
        location = urlsplit(r.headers.get("Location", ""))
        if r.status == 302:
            assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example/api/consent"
        return r.status, parse_qs(location.query), await r.text()


async def test_admin_consent_redirects_with_the_consenting_tenant_and_registers_it(sim: SimHandle) -> None:
    status, back, _ = await consent_request(sim, sim_tenant=TENANT_C)
    assert status == 302
    assert back == {
        "x": ["1"],
        "admin_consent": ["True"],
        "tenant": [TENANT_C],
        "scope": [GRAPH_SCOPE],
        "state": ["st-123"],
    }
    assert claims(await token_for(sim, TENANT_C))["tid"] == TENANT_C
    # Without sim_tenant: the decision queued by the control API, then the home tenant.
    await control(sim, "POST", "/consent", {"decision": "accept", "tenant": "dddddddd-0000-4000-8000-00000000000d"})
    _, back, _ = await consent_request(sim)
    assert back["tenant"] == ["dddddddd-0000-4000-8000-00000000000d"]
    _, back, _ = await consent_request(sim)
    assert back["tenant"] == [sim.config.tenant_id]


async def test_a_revoked_tenant_consents_again(sim: SimHandle) -> None:
    await control(sim, "POST", f"/tenants/{TENANT_B}/revoke", {"code": 65001})
    assert (await raw_token(sim, TENANT_B))[0] == 400
    status, back, _ = await consent_request(sim, sim_tenant=TENANT_B)
    assert status == 302 and back["tenant"] == [TENANT_B]
    assert (await raw_token(sim, TENANT_B))[0] == 200


@pytest.mark.parametrize("error", ["consent_required", "access_denied"])
async def test_a_denied_admin_consent_redirects_with_an_error_and_registers_nothing(sim: SimHandle, error: str) -> None:
    await control(sim, "POST", "/consent", {"decision": "deny", "tenant": TENANT_C, "error": error})
    status, back, _ = await consent_request(sim)
    assert status == 302
    assert back["error"] == [error] and back["state"] == ["st-123"] and back["admin_consent"] == ["True"]
    assert back["error_description"][0].startswith("AADSTS65004: ")
    assert "tenant" not in back
    tenants = await control(sim, "GET", "/tenants")
    assert TENANT_C not in [t["tenant"] for t in tenants["value"]]
    assert (await raw_token(sim, TENANT_C))[1]["error_codes"] == [90002]
    status, back, _ = await consent_request(sim)  # the decision was for one request only
    assert status == 302 and back["tenant"] == [sim.config.tenant_id]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"client_id": ""}, "AADSTS900144"),
        ({"redirect_uri": ""}, "AADSTS900144"),
        ({"client_id": "99999999-9999-9999-9999-999999999999"}, "AADSTS700016"),
        ({"redirect_uri": "not a url"}, "AADSTS50011"),
    ],
    ids=["no-client-id", "no-redirect-uri", "other-app", "bad-redirect-uri"],
)
async def test_a_consent_request_the_platform_cannot_trust_gets_an_error_page(
    sim: SimHandle, params: dict[str, str], code: str
) -> None:
    status, back, page = await consent_request(sim, sim_tenant=TENANT_C, **params)
    assert status == 400 and back == {} and code in page
    assert (await raw_token(sim, TENANT_C))[1]["error_codes"] == [90002]


# --------------------------------------------------------------------------- storms and concurrency


async def test_a_storm_in_one_tenant_leaves_the_others_served(sim: SimHandle) -> None:
    storm = await control(sim, "POST", f"/tenants/{TENANT_B}/throttle", {"seconds": 60, "status": 429, "retryAfter": 7})
    assert storm["status"] == 429 and storm["remainingSeconds"] == pytest.approx(60, abs=1)
    b_token, home_token = await token_for(sim, TENANT_B), await token_for(sim, sim.config.tenant_id)
    for path in ("/subscriptions", "/users/delta"):
        status, headers, body = await graph(sim, "GET", path, b_token)
        assert status == 429 and headers["Retry-After"] == "7"
        assert body["error"]["code"] == "TooManyRequests" and body["error"]["innerError"]["code"] == "429"
        assert (await graph(sim, "GET", path, home_token))[0] == 200
    await control(sim, "POST", f"/tenants/{TENANT_B}/throttle", {"seconds": 30, "status": 503, "retryAfter": 2})
    status, headers, body = await graph(sim, "GET", "/users/delta", b_token)
    assert (status, headers["Retry-After"], body["error"]["code"]) == (503, "2", "ServiceNotAvailable")
    await control(sim, "POST", "/clock", {"advanceSeconds": 31})  # simulator time ends it
    assert (await graph(sim, "GET", "/users/delta", b_token))[0] == 200
    listed = await control(sim, "GET", f"/tenants/{TENANT_B}")
    assert listed["storm"] is None and listed["active"] is True


async def test_subscription_writes_of_two_tenants_proceed_together(receiver: Receiver) -> None:
    handle = await start(SimConfig(write_latency_ms=400, validation_timeout_seconds=2.0))
    try:
        await control(handle, "POST", "/tenants", {"tenant": TENANT_B})
        tokens = {}
        for tenant in (handle.config.tenant_id, TENANT_B):
            await control(handle, "POST", "/users", {"displayName": "u"}, tenant=tenant)
            tokens[tenant] = await token_for(handle, tenant)
        body = {"changeType": "updated", "notificationUrl": receiver.url, "resource": "users"}
        body["expirationDateTime"] = in_an_hour()
        started = time.monotonic()
        answers = await asyncio.gather(*(graph(handle, "POST", "/subscriptions", t, body) for t in tokens.values()))
        elapsed = time.monotonic() - started
        assert [a[0] for a in answers] == [201, 201]
        assert elapsed < 0.75, elapsed  # one write's latency (0.4 s), not two in a row
        for tenant in tokens:
            listed = await control(handle, "GET", "/subscriptions", tenant=tenant)
            assert len(listed["value"]) == 1
    finally:
        await handle.close()


async def test_reset_forgets_every_tenant_but_the_home_tenant(sim: SimHandle) -> None:
    await control(sim, "POST", "/reset")
    tenants = await control(sim, "GET", "/tenants")
    assert [(t["tenant"], t["home"], t["active"]) for t in tenants["value"]] == [(sim.config.tenant_id, True, True)]
    assert (await raw_token(sim, TENANT_B))[1]["error_codes"] == [90002]


async def test_a_thousand_empty_tenants_cost_no_state(sim: SimHandle) -> None:
    for n in range(1000):
        sim.state.tenants.add(f"{n:08d}-0000-4000-8000-000000000000", True)
    assert len(sim.state.tenants.states()) == 1  # only the home tenant's: a state is made on first use
    token = await token_for(sim, "00000999-0000-4000-8000-000000000000")
    assert (await graph(sim, "GET", "/subscriptions", token))[0] == 200
    assert len(sim.state.tenants.states()) == 2


# --------------------------------------------------------------------------- simctl


async def test_simctl_drives_tenants_and_consent(sim: SimHandle) -> None:
    from typer.testing import CliRunner

    from devtools.simctl import app

    async def simctl(*args: str) -> str:
        # simctl runs its own event loop: in a thread, beside the simulator's.
        result = await asyncio.to_thread(CliRunner().invoke, app, ["--control-url", sim.control_url, *args])
        assert result.exit_code == 0, result.output
        return str(result.output)

    assert f"{TENANT_C}  no consent" in await simctl("tenants", "add", TENANT_C, "--no-consent")
    assert (await raw_token(sim, TENANT_C))[1]["error_codes"] == [65001]
    await simctl("tenants", "add", TENANT_C)
    assert "revoked (AADSTS7000112)" in await simctl("tenants", "revoke", TENANT_C, "--code", "7000112")
    assert (await raw_token(sim, TENANT_C))[1]["error_codes"] == [7000112]
    assert f"{TENANT_C}  active" in await simctl("tenants", "restore", TENANT_C)
    assert "429 for 60 s" in await simctl("tenants", "throttle", TENANT_C, "--seconds", "60", "--retry-after", "3")
    listed = await simctl("tenants", "list")
    assert f"{TENANT_C}  active  storm 429" in listed and "3 tenant(s)" in listed
    await simctl("--tenant", TENANT_B, "drives", "create", "b-drive")
    assert [d["id"] for d in (await control(sim, "GET", "/drives", tenant=TENANT_B))["value"]] == ["b-drive"]
    assert (await control(sim, "GET", "/drives"))["value"] == []
    await simctl("consent", "next", "--tenant", "eeeeeeee-0000-4000-8000-00000000000e", "--deny")
    assert (await control(sim, "GET", "/consent"))["next"] == [
        {"decision": "deny", "tenant": "eeeeeeee-0000-4000-8000-00000000000e", "error": "consent_required"}
    ]


async def test_writes_are_limited_per_tenant_and_optionally_across_tenants(receiver: Receiver) -> None:
    handle = await start(SimConfig(write_limit=1, app_write_limit=2, validation_timeout_seconds=2.0))
    try:
        tenants = [handle.config.tenant_id, TENANT_B, TENANT_C]
        tokens = {}
        for tenant in tenants:
            await control(handle, "POST", "/tenants", {"tenant": tenant})
            await control(handle, "POST", "/users", {"displayName": "u"}, tenant=tenant)
            tokens[tenant] = await token_for(handle, tenant)
        body = {"changeType": "updated", "notificationUrl": receiver.url, "resource": "users"}
        body["expirationDateTime"] = in_an_hour()
        first = await graph(handle, "POST", "/subscriptions", tokens[tenants[0]], body)
        again = await graph(handle, "POST", "/subscriptions", tokens[tenants[0]], body)
        other = await graph(handle, "POST", "/subscriptions", tokens[TENANT_B], body)
        third = await graph(handle, "POST", "/subscriptions", tokens[TENANT_C], body)
        # One write a tenant (the home tenant's second is refused), two across tenants (so C's first is).
        assert [first[0], again[0], other[0], third[0]] == [201, 429, 201, 429]
        assert again[1]["Retry-After"] and third[2]["error"]["code"] == "TooManyRequests"
    finally:
        await handle.close()
