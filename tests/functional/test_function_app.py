"""The function app's wiring, called the way the Python worker calls it."""

from __future__ import annotations

import json
import subprocess
import sys

import azure.functions as func
import pytest

from devtools.host.http import to_response
from shared.config.settings import DEFAULT_RENEW_SCHEDULE
from tests.functional.app_functions import FUNCTIONS


def user_function(name: str):
    return FUNCTIONS[name].get_user_function()


def post(route: str, body: bytes = b"", **params: str) -> func.HttpRequest:
    return func.HttpRequest("POST", f"http://localhost/api/{route}", params=params, body=body)


def test_the_app_declares_its_functions_with_their_bindings():
    assert set(FUNCTIONS) == {
        "notifications", "lifecycle", "process", "renew", "health", "sharepoint", "consent_start", "consent",
        "eventgrid",
    }  # fmt: skip
    triggers = {name: f.get_trigger() for name, f in FUNCTIONS.items()}
    assert triggers["sharepoint"].route == "sharepoint"
    assert triggers["process"].queue_name == "graph-notifications"
    assert triggers["process"].connection == "AzureWebJobsStorage"
    assert triggers["notifications"].route == "notifications"
    assert triggers["lifecycle"].route == "lifecycle"
    assert triggers["renew"].schedule == DEFAULT_RENEW_SCHEDULE
    # scripts/activate-event-grid.sh routes the partner topic to <app>/functions/eventgrid.
    assert triggers["eventgrid"].get_binding_name() == "eventGridTrigger"


@pytest.mark.parametrize("route", ["notifications", "lifecycle"])
async def test_handshake_answers_without_any_setting_or_storage(route, monkeypatch):
    # A cold start answers the handshake before reading settings or touching storage.
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    token = "Validation: Testing client application reachability for subscription Request-Id: 1 +%/&é✓"
    response = await user_function(route)(post(route, validationToken=token))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_body().decode("utf-8") == token


@pytest.mark.parametrize("route", ["notifications", "lifecycle"])
async def test_handshake_tells_browsers_not_to_sniff_through_the_app_and_the_local_host(route, monkeypatch):
    # The echoed token is the sender's text: a browser must not read it as HTML.
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    response = await user_function(route)(post(route, validationToken="<script>alert(1)</script>"))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    served = to_response(response)  # what devtools/host sends for it
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_notification_without_storage_setting_fails_loudly_naming_it(monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    with pytest.raises(Exception, match="AzureWebJobsStorage"):
        await user_function("notifications")(post("notifications", b'{"value": []}'))


async def test_malformed_notification_gets_400_through_the_app(azurite, monkeypatch):
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    response = await user_function("notifications")(post("notifications", b"{not json"))
    assert response.status_code == 400
    assert b"JSON" in response.get_body()


async def test_notification_for_an_unknown_subscription_is_accepted_and_dropped(azurite, monkeypatch):
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    body = json.dumps({"value": [{"subscriptionId": "nobody", "changeType": "updated", "clientState": "x"}]})
    response = await user_function("notifications")(post("notifications", body.encode()))
    assert response.status_code == 202
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_importing_the_app_stays_light():
    # The SDKs load on first use, so a cold start can answer Graph's handshake in time.
    code = (
        "import sys, function_app; heavy = ['msgraph', 'azure.identity', 'azure.storage.queue', "
        "'azure.data.tables', 'aiohttp']; print([m for m in heavy if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
