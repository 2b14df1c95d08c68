"""GET /api/health against Azurite and the Graph simulator: 200 when working, 503 with the reason when not."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from devtools.azurite import free_port
from shared.clock import utcnow
from shared.services import build_health
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
