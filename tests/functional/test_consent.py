"""Admin consent onboarding against a real Azurite: the flow's objects, the function app's routes, the local host.

The identity platform is not called: each test follows the start's 302 to read its state,
then sends the reply the platform documents (tests/payloads/admin-consent-replies.json)
to the callback itself, as the admin's browser would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devtools.azurite import Azurite, free_port
from devtools.launch import start_host
from shared import refusals
from shared.clock import utcnow
from shared.model.names import CONSENT_STATE_TABLE, NOTIFICATIONS_QUEUE, TENANTS_TABLE
from shared.model.notifications import Envelope
from shared.model.tenant import ACTIVE, REMOVING, Tenant, new_tenant
from shared.queues.message_queue import MessageQueue
from shared.refusals import Reason
from shared.stores.clients import queue_client, table_client
from shared.stores.tenants import TenantStore
from shared.tenants.consent import ConsentFlow, ConsentRequest
from shared.tenants.onboarding import register_consent
from shared.tenants.pages import REFUSALS, Page
from shared.tenants.state import new_state, sign_state
from shared.tenants.state_store import USED_PARTITION, ConsentStateStore
from tests.conftest import PAYLOADS
from tests.functional.app_functions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
REPLIES = json.loads((PAYLOADS / "admin-consent-replies.json").read_text())
CLIENT_ID = "22222222-2222-2222-2222-222222222222"
REDIRECT = "https://app.example.net/api/consent"
REQUEST = ConsentRequest("", CLIENT_ID, "https://graph.microsoft.com/.default", REDIRECT)
# What a closed port answers at once: storage that is down.
DOWN = {"retry_total": 0, "connection_timeout": 2}


def down_connection() -> str:
    port = free_port()
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


@dataclass
class Bench:
    """One instance's flow over its own tables and queue, and the stores a test reads them with."""

    flow: ConsentFlow
    tenants: TenantStore
    states: ConsentStateStore
    queue: Any
    azurite: Azurite
    names: dict[str, str]

    async def envelopes(self) -> list[Envelope]:
        """Every message on the queue, left in place."""
        try:
            peeked = await self.queue.peek_messages(max_messages=32)
        except Exception:  # noqa: BLE001 - a queue never written to does not exist yet
            return []
        return [Envelope.from_json(message.content) for message in peeked]


@pytest.fixture
async def bench(azurite, unique_name) -> AsyncIterator[Any]:
    """Builds flows that share one set of tables and one queue (as instances of one app do)."""
    names = {"tenants": unique_name("tenants"), "states": unique_name("consent"), "queue": unique_name("notif")}
    async with AsyncExitStack() as clients:

        async def make(tenants_client: Any = None, states_client: Any = None, queue: Any = None) -> Bench:
            def own(client: Any) -> Any:
                clients.push_async_callback(client.close)
                return client

            conn = azurite.connection_string
            tenants = TenantStore(own(tenants_client or table_client(conn, names["tenants"])))
            states = ConsentStateStore(own(states_client or table_client(conn, names["states"])))
            target = own(queue or queue_client(conn, names["queue"]))
            reader = own(queue_client(conn, names["queue"]))
            flow = ConsentFlow(REQUEST, tenants, states, MessageQueue(target))
            readable = TenantStore(own(table_client(conn, names["tenants"])))
            return Bench(
                flow, readable, ConsentStateStore(own(table_client(conn, names["states"]))), reader, azurite, names
            )

        yield make


def state_of(page: Page) -> str:
    assert page.status == 302, page.body
    location = urllib.parse.urlsplit(page.headers["Location"])
    assert location.path == "/organizations/v2.0/adminconsent"
    [state] = urllib.parse.parse_qs(location.query)["state"]
    return state


def reply(state: str, tenant_id: str, **changes: str | None) -> dict[str, str]:
    """The documented successful reply, for ``tenant_id`` and ``state``; a change to None leaves a parameter out."""
    params = {**REPLIES["success"], "tenant": tenant_id, "state": state, **changes}
    return {key: value for key, value in params.items() if value is not None}


def refused(reason: Reason) -> int:
    """Refusals this process counted for ``reason`` (nothing flushes in these tests)."""
    return sum(row.count for row in refusals.ledger().due(utcnow()) if row.reason is reason)


async def registered(store: TenantStore) -> list[Tenant]:
    try:
        return await store.list()
    except Exception:  # noqa: BLE001 - no table yet: nothing was ever registered
        return []


def new_tenant_id() -> str:
    return str(uuid.uuid4())


async def test_a_full_consent_registers_the_tenant_active_and_queues_one_tenant_envelope(bench):
    b = await bench()
    tenant_id = new_tenant_id()

    start = await b.flow.start({"name": "Contoso <Ltd>"}, utcnow())
    page = await b.flow.finish(reply(state_of(start), tenant_id.upper()), utcnow())

    assert page.status == 200, page.body
    assert "Contoso &lt;Ltd&gt;" in page.body
    assert "is connected" in page.body
    [tenant] = await registered(b.tenants)
    assert (tenant.tenant_id, tenant.name, tenant.status) == (tenant_id, "Contoso <Ltd>", ACTIVE)
    [envelope] = await b.envelopes()
    assert envelope.source == "tenant"
    assert envelope.items == [{"tenantId": tenant_id}]


async def test_the_start_redirects_to_the_admin_consent_endpoint_with_the_app_and_redirect_uri(bench):
    b = await bench()

    page = await b.flow.start({}, utcnow())

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.headers["Location"]).query)
    assert page.headers["Location"].startswith("https://login.microsoftonline.com/organizations/v2.0/adminconsent?")
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [REDIRECT]
    assert query["scope"] == ["https://graph.microsoft.com/.default"]
    assert await registered(b.tenants) == []


async def test_a_state_from_one_instance_is_accepted_by_another(bench):
    first, second = await bench(), await bench()
    tenant_id = new_tenant_id()

    page = await second.flow.finish(reply(state_of(await first.flow.start({}, utcnow())), tenant_id), utcnow())

    assert page.status == 200, page.body
    assert [t.tenant_id for t in await registered(first.tenants)] == [tenant_id]


async def test_two_instances_making_the_signing_key_at_once_agree(bench):
    first, second = await bench(), await bench()

    keys = await asyncio.gather(first.flow._states.signing_key(), second.flow._states.signing_key())

    assert keys[0] == keys[1]
    assert len(keys[0]) == 32


async def _expired_state(b: Bench) -> str:
    key = await b.states.signing_key()
    return sign_state(new_state("Late", utcnow() - timedelta(hours=1, seconds=1)), key)


async def _forged_state(b: Bench) -> str:
    await b.states.signing_key()  # the app has a key, just not this one
    return sign_state(new_state("Forged", utcnow()), bytes(32))


async def _altered_state(b: Bench) -> str:
    good = state_of(await b.flow.start({"name": "A"}, utcnow()))
    header, payload, signature = good.split(".")
    return f"{header}.{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{signature}"


async def _good_state(b: Bench) -> str:
    return state_of(await b.flow.start({"name": "Contoso"}, utcnow()))


@pytest.mark.parametrize(
    ("reason", "make_state", "changes"),
    [
        pytest.param(Reason.CONSENT_NO_STATE, None, {}, id="missing state"),
        pytest.param(Reason.CONSENT_BAD_STATE, _forged_state, {}, id="forged state"),
        pytest.param(Reason.CONSENT_BAD_STATE, _altered_state, {}, id="altered state"),
        pytest.param(Reason.CONSENT_EXPIRED_STATE, _expired_state, {}, id="expired state"),
        pytest.param(Reason.CONSENT_DECLINED, _good_state, {"error": "access_denied"}, id="access denied"),
        pytest.param(Reason.CONSENT_BAD_TENANT, _good_state, {"tenant": "contoso.onmicrosoft.com"}, id="domain"),
        pytest.param(Reason.CONSENT_BAD_TENANT, _good_state, {"tenant": None}, id="no tenant"),
        pytest.param(Reason.CONSENT_NOT_GRANTED, _good_state, {"admin_consent": None}, id="no admin_consent"),
        pytest.param(Reason.CONSENT_NOT_GRANTED, _good_state, {"admin_consent": "False"}, id="admin_consent False"),
    ],
)
async def test_a_refused_reply_registers_nothing_queues_nothing_and_says_why(bench, reason, make_state, changes):
    b = await bench()
    tenant_id = new_tenant_id()
    state = await make_state(b) if make_state else None
    params = reply(state or "", tenant_id, **changes)
    if state is None:
        del params["state"]

    page = await b.flow.finish(params, utcnow())

    assert page.status == 400
    assert REFUSALS[reason] in page.body
    assert refused(reason) == 1
    assert sum(refused(r) for r in Reason) == 1
    assert await registered(b.tenants) == []
    assert await b.envelopes() == []


async def test_a_reused_state_registers_nothing_the_second_time(bench):
    b = await bench()
    first, second = new_tenant_id(), new_tenant_id()
    state = state_of(await b.flow.start({}, utcnow()))
    assert (await b.flow.finish(reply(state, first), utcnow())).status == 200

    page = await b.flow.finish(reply(state, second), utcnow())

    assert page.status == 400
    assert REFUSALS[Reason.CONSENT_REUSED_STATE] in page.body
    assert refused(Reason.CONSENT_REUSED_STATE) == 1
    assert [t.tenant_id for t in await registered(b.tenants)] == [first]
    assert [e.items for e in await b.envelopes()] == [[{"tenantId": first}]]


async def test_one_state_sent_to_two_instances_at_once_registers_one_tenant(bench):
    first, second = await bench(), await bench()
    state = state_of(await first.flow.start({}, utcnow()))
    one, other = new_tenant_id(), new_tenant_id()

    pages = await asyncio.gather(
        first.flow.finish(reply(state, one), utcnow()), second.flow.finish(reply(state, other), utcnow())
    )

    assert sorted(page.status for page in pages) == [200, 400]
    assert len(await registered(first.tenants)) == 1
    assert len(await first.envelopes()) == 1


async def test_the_documented_error_reply_registers_nothing_and_its_description_goes_only_to_the_log(bench, caplog):
    b = await bench()
    state = await _good_state(b)
    params = {**REPLIES["error"], "state": state}  # it names a tenant and admin_consent=True, yet nothing was granted

    with caplog.at_level(logging.INFO):
        page = await b.flow.finish(params, utcnow())

    assert page.status == 400
    assert REFUSALS[Reason.CONSENT_DECLINED] in page.body
    assert "consent_required" in page.body
    assert "AADSTS65004" not in page.body
    assert "AADSTS65004" in caplog.text
    assert state not in caplog.text
    assert await registered(b.tenants) == []
    assert await b.envelopes() == []


async def test_neither_the_state_nor_the_key_is_logged(bench, caplog):
    b = await bench()
    with caplog.at_level(logging.DEBUG):
        state = state_of(await b.flow.start({"name": "X"}, utcnow()))
        await b.flow.finish(reply(state, new_tenant_id()), utcnow())
        await b.flow.finish(reply(state, new_tenant_id()), utcnow())

    key = await b.states.signing_key()
    assert state not in caplog.text
    assert state.split(".")[2] not in caplog.text
    assert key.hex() not in caplog.text


async def test_a_consent_resumes_a_suspended_tenant(bench):
    b = await bench()
    tenant_id = new_tenant_id()
    await b.tenants.setup()
    long_ago = utcnow() - timedelta(days=3)
    await b.tenants.add(
        new_tenant(tenant_id, "Fabrikam", long_ago, ACTIVE).suspended("AADSTS65001 consent revoked", long_ago)
    )

    page = await b.flow.finish(reply(await _good_state(b), tenant_id), utcnow())

    assert page.status == 200, page.body
    [tenant] = await registered(b.tenants)
    assert (tenant.status, tenant.reason, tenant.suspended_at, tenant.name) == (ACTIVE, "", None, "Fabrikam")
    assert [e.items for e in await b.envelopes()] == [[{"tenantId": tenant_id}]]


class InterleavedStore(TenantStore):
    """A tenant store after whose first read another instance activates the tenant (a real write)."""

    def __init__(self, client: Any, other: TenantStore) -> None:
        super().__init__(client)
        self._other: TenantStore | None = other

    async def get(self, tenant_id: str) -> Any:
        found = await super().get(tenant_id)
        if self._other is not None and found is not None:
            other, self._other = self._other, None
            theirs = await other.get(tenant_id)
            assert theirs is not None
            await other.save(theirs.tenant.activated(utcnow()), theirs.etag)
        return found


async def test_a_consent_that_meets_another_instance_writing_the_tenant_reads_again(bench):
    b = await bench()
    tenant_id = new_tenant_id()
    await b.tenants.setup()
    now = utcnow()
    await b.tenants.add(new_tenant(tenant_id, "Twice", now, ACTIVE).suspended("AADSTS65001 consent revoked", now))
    async with table_client(b.azurite.connection_string, b.names["tenants"]) as client:
        store = InterleavedStore(client, b.tenants)

        registration = await register_consent(store, tenant_id, "", utcnow())

    assert registration.outcome == "unchanged"  # its save met the other write, and the second read found it active
    assert [t.status for t in await registered(b.tenants)] == [ACTIVE]


async def test_a_consent_of_a_tenant_being_removed_is_refused_and_changes_nothing(bench):
    b = await bench()
    tenant_id = new_tenant_id()
    await b.tenants.setup()
    await b.tenants.add(new_tenant(tenant_id, "Leaving", utcnow(), ACTIVE).removing(utcnow()))

    page = await b.flow.finish(reply(await _good_state(b), tenant_id), utcnow())

    assert page.status == 409
    assert "being disconnected" in page.body
    assert refused(Reason.CONSENT_TENANT_REMOVING) == 1
    [tenant] = await registered(b.tenants)
    assert tenant.status == REMOVING
    assert await b.envelopes() == []


async def test_a_consent_of_an_active_tenant_changes_nothing_but_asks_for_its_subscriptions(bench):
    b = await bench()
    tenant_id = new_tenant_id()
    await b.tenants.setup()
    await b.tenants.add(new_tenant(tenant_id, "Here", utcnow(), ACTIVE))
    before = await b.tenants.get(tenant_id)

    page = await b.flow.finish(reply(await _good_state(b), tenant_id), utcnow())

    assert page.status == 200
    after = await b.tenants.get(tenant_id)
    assert after is not None and before is not None and after.etag == before.etag
    assert len(await b.envelopes()) == 1


async def test_redeemed_states_past_their_expiry_are_pruned_at_the_next_redemption(bench):
    b = await bench()
    await b.states.signing_key()
    old = new_state("", utcnow() - timedelta(hours=2))
    assert await b.states.redeem(old, utcnow() - timedelta(hours=2))

    assert (await b.flow.finish(reply(await _good_state(b), new_tenant_id()), utcnow())).status == 200

    async with table_client(b.azurite.connection_string, b.names["states"]) as client:
        used = [e["RowKey"] async for e in client.query_entities(f"PartitionKey eq '{USED_PARTITION}'")]
    assert len(used) == 1
    assert old.state_id not in used


# --- a crash or an outage at each step --------------------------------------------------------


async def test_storage_down_at_the_start_is_a_503_and_no_redirect(bench):
    b = await bench(states_client=table_client(down_connection(), "consent", **DOWN))

    page = await b.flow.start({}, utcnow())

    assert page.status == 503
    assert "Location" not in page.headers


async def test_tenants_table_down_after_the_state_is_redeemed_registers_nothing_and_a_new_start_works(bench):
    broken = await bench(tenants_client=table_client(down_connection(), "tenants", **DOWN))
    tenant_id = new_tenant_id()

    page = await broken.flow.finish(reply(await _good_state(broken), tenant_id), utcnow())

    assert page.status == 503
    assert "try again" in page.body.lower()
    assert await registered(broken.tenants) == []
    assert await broken.envelopes() == []
    working = await bench()
    assert (await working.flow.finish(reply(await _good_state(working), tenant_id), utcnow())).status == 200
    assert [t.status for t in await registered(working.tenants)] == [ACTIVE]


async def test_queue_down_after_registering_still_connects_the_tenant_for_the_renew_tick(bench, caplog):
    b = await bench(queue=queue_client(down_connection(), "notif", **DOWN))
    tenant_id = new_tenant_id()

    with caplog.at_level(logging.WARNING):
        page = await b.flow.finish(reply(await _good_state(b), tenant_id), utcnow())

    assert page.status == 200
    assert [(t.tenant_id, t.status) for t in await registered(b.tenants)] == [(tenant_id, ACTIVE)]
    assert "consent.schedule_failed" in caplog.text


async def test_a_start_with_an_unusable_name_is_refused_and_counted(bench):
    b = await bench()

    page = await b.flow.start({"name": "x" * 300}, utcnow())

    assert page.status == 400
    assert refused(Reason.CONSENT_BAD_NAME) == 1


# --- the function app's routes ------------------------------------------------------------------


def get(route: str, **params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"http://localhost/api/{route}", params=params, body=b"")


def multi_env(azurite: Azurite) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TENANT_MODE": "multi",
        "GRAPH_CLIENT_ID": CLIENT_ID,
        "NOTIFICATION_URL": "https://app.example.net/api/notifications",
        "LIFECYCLE_NOTIFICATION_URL": "https://app.example.net/api/lifecycle",
    }


@pytest.mark.parametrize("route", ["consent_start", "consent"])
async def test_single_mode_answers_404_without_touching_storage(route, monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("TENANT_MODE", raising=False)

    response = await FUNCTIONS[route].get_user_function()(get(route.replace("_", "/"), state="x", tenant="y"))

    assert response.status_code == 404
    assert b"TENANT_MODE=single" in response.get_body()


def test_the_consent_routes_stay_anonymous_when_the_app_wants_a_function_key():
    # Imported afresh with HTTP_AUTH_LEVEL=function: the other routes take it, the consent routes do not.
    code = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): str(f.get_trigger().auth_level) for f in"
        " function_app.app.get_functions() if f.get_trigger().get_binding_name() == 'httpTrigger'}))"
    )
    env = {**os.environ, "HTTP_AUTH_LEVEL": "function"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    levels = {name: level.split(".")[-1].lower() for name, level in json.loads(run.stdout).items()}

    assert levels["consent_start"] == levels["consent"] == "anonymous"
    assert levels["notifications"] == levels["health"] == "function"


async def test_the_routes_register_a_tenant_in_table_tenants_and_queue_it_on_graph_notifications(
    azurite_factory, monkeypatch
):
    azurite = azurite_factory()
    for key, value in multi_env(azurite).items():
        monkeypatch.setenv(key, value)
    tenant_id = new_tenant_id()

    start = await FUNCTIONS["consent_start"].get_user_function()(get("consent/start", name="Contoso"))
    location = start.headers["Location"]
    [state] = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["state"]
    done = await FUNCTIONS["consent"].get_user_function()(get("consent", **reply(state, tenant_id)))

    assert start.status_code == 302
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["redirect_uri"] == [REDIRECT]
    assert done.status_code == 200, done.get_body()
    assert done.mimetype == "text/html"
    async with table_client(azurite.connection_string, TENANTS_TABLE) as client:
        [tenant] = await TenantStore(client).list()
    assert (tenant.tenant_id, tenant.status) == (tenant_id, ACTIVE)
    async with queue_client(azurite.connection_string, NOTIFICATIONS_QUEUE) as client:
        [message] = await client.peek_messages(max_messages=32)
    assert Envelope.from_json(message.content).items == [{"tenantId": tenant_id}]
    async with table_client(azurite.connection_string, CONSENT_STATE_TABLE) as client:
        assert len([e async for e in client.query_entities(f"PartitionKey eq '{USED_PARTITION}'")]) == 1


# --- the local host, with a function key on every other route ------------------------------------


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def keyed_multi_host(azurite_factory, tmp_path: Path) -> Iterator[tuple[str, Azurite]]:
    """The app under the local host: HTTP_AUTH_LEVEL=function, TENANT_MODE=multi."""
    azurite = azurite_factory()
    env = dict(
        {
            **multi_env(azurite),
            "HTTP_AUTH_LEVEL": "function",
            "LOCALHOST_FUNCTION_KEY": "local-test-key",
            # The queue trigger stays off: the tenant envelope stays on the queue to be read.
            "AzureWebJobs.process.Disabled": "true",
        }
    )
    host, port = start_host(env, tmp_path / "host.log", without=("FUNCTIONS_HOST_KEY",))
    try:
        yield f"http://127.0.0.1:{port}", azurite
    finally:
        host.stop(signal.SIGTERM, timeout=15)


async def test_an_admin_without_a_function_key_connects_through_the_host(keyed_multi_host):
    url, azurite = keyed_multi_host
    tenant_id = new_tenant_id()

    status, headers, _ = await asyncio.to_thread(fetch, f"{url}/api/consent/start?name=Contoso")
    assert status == 302
    [state] = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["Location"]).query)["state"]
    query = urllib.parse.urlencode(reply(state, tenant_id))
    status, headers, body = await asyncio.to_thread(fetch, f"{url}/api/consent?{query}")

    assert status == 200, body
    assert headers["Content-Type"].startswith("text/html")
    assert b"is connected" in body
    assert (await asyncio.to_thread(fetch, f"{url}/api/health"))[0] == 401  # the other routes still want the key
    async with table_client(azurite.connection_string, TENANTS_TABLE) as client:
        assert [t.status for t in await TenantStore(client).list()] == [ACTIVE]
