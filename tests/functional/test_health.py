"""GET /api/health against Azurite and the Graph simulator: 200 when working, 503 with the reason when not."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from devtools.azurite import free_port
from shared.app.health import build_health
from shared.clock import utcnow
from shared.model.names import REFUSALS_TABLE
from shared.refusals import Ledger, Reason
from shared.stores.clients import table_client
from shared.stores.refusals import RefusalFlusher, RefusalTable
from tests.functional.app_functions import FUNCTIONS
from tests.functional.stacks import subscribed


async def check(env: dict[str, str]) -> tuple[int, dict]:
    health = await build_health(env)
    try:
        verdict = await health.monitor.check()
    finally:
        await health.close()
    return verdict.status, verdict.body


async def test_a_working_app_is_healthy_with_its_figures_and_no_secret(stack_factory, monkeypatch):
    # Through the function app's route, as a load balancer's probe reaches it.
    import azure.functions as func

    import function_app

    stack = await subscribed(stack_factory)
    record = await stack.record()
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    route = FUNCTIONS["health"]

    response = await route.get_user_function()(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    await (await function_app.health_checks.get()).close()

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body["status"] == "healthy"
    assert body["subscriptions"]["count"] == 1
    assert body["subscriptions"]["pastDue"] == 0
    assert set(body["queues"]) == {"graph-notifications", "graph-notifications-poison", "graph-changes"}
    assert body["oldestSync"] is not None  # the first pass, requested at creation, completed
    text = response.get_body().decode()
    assert record.client_state not in text
    assert "AccountKey" not in text and stack.env["GRAPH_CLIENT_SECRET"] not in text


async def test_storage_down_answers_503_naming_storage(stack_factory):
    stack = await stack_factory()
    dead = stack.connection.replace(f":{stack.azurite.queue_port}/", f":{free_port()}/").replace(
        f":{stack.azurite.table_port}/", f":{free_port()}/"
    )

    status, body = await check({**stack.env, "AzureWebJobsStorage": dead})

    assert status == 503
    assert body["reasons"][0].startswith("storage unreachable")
    assert body["storage"] == {"reachable": False}


async def test_a_subscription_past_its_expiry_answers_503(stack_factory):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    await stack.store.save(replace(record, expires_at=utcnow() - timedelta(minutes=1)))

    status, body = await check(stack.env)

    assert status == 503
    assert "1 subscription(s) past their expiry" in body["reasons"]


async def test_every_instances_refusals_are_summed_by_reason(stack_factory):
    # Two instances, each with its own ledger, flushing to the one table; any instance may answer the probe.
    stack = await stack_factory()
    now = utcnow()
    first, second = Ledger(), Ledger()
    first.add(Reason.BAD_CLIENT_STATE, 3, now)
    first.add(Reason.UNKNOWN_SUBSCRIPTION, 1, now)
    second.add(Reason.BAD_CLIENT_STATE, 2, now)
    second.add(Reason.DECRYPTION_FAILED, 4, now - timedelta(hours=2))
    async with table_client(stack.connection, REFUSALS_TABLE) as client:
        for ledger in (first, second):
            flusher = RefusalFlusher(RefusalTable(client), counts=ledger).start()
            await flusher.close()  # a graceful close flushes

    status, body = await check(stack.env)

    assert status == 200
    hour, day = body["refusals"]["lastHour"], body["refusals"]["last24Hours"]
    assert {reason: n for reason, n in hour.items() if n} == {"badClientState": 5, "unknownSubscription": 1}
    assert {reason: n for reason, n in day.items() if n} == {
        "badClientState": 5,
        "unknownSubscription": 1,
        "decryptionFailed": 4,
    }
    assert body["warnings"] == []  # the decryption failures are two hours old


async def test_refused_notifications_show_in_health_by_reason(stack_factory, monkeypatch):
    import aiohttp
    import azure.functions as func

    import function_app

    stack = await subscribed(stack_factory)
    record = await stack.record()
    forged = {"subscriptionId": record.subscription_id, "changeType": "updated", "clientState": "wrong"}
    stranger = {"subscriptionId": "7a1c9e40-0000-4000-8000-00000000abcd", "changeType": "updated", "clientState": "x"}
    async with aiohttp.ClientSession() as session:
        batch = {"value": [forged, stranger, forged]}
        async with session.post(stack.env["NOTIFICATION_URL"], json=batch) as response:
            assert response.status == 202
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)

    response = await FUNCTIONS["health"].get_user_function()(
        func.HttpRequest("GET", "http://localhost/api/health", body=b"")
    )
    await (await function_app.health_checks.get()).close()

    refused = json.loads(response.get_body())["refusals"]["lastHour"]
    assert {reason: n for reason, n in refused.items() if n} == {"badClientState": 2, "unknownSubscription": 1}
