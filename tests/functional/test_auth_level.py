"""HTTP_AUTH_LEVEL=function: the real function app in the local host, with a function key.

Graph calls the notification URL with its ``?code=`` key, the handshake included; a
request without the key is refused (401) before the function runs, so nothing is stored.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from devtools.azurite import Azurite
from devtools.launch import start_host
from shared.clock import utcnow
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore

ROOT = Path(__file__).resolve().parents[2]
KEY = "local-test-key"
SECRET = "the-client-state"
SUBSCRIPTION = "8b6f5f0e-2f5e-4d7e-9a53-1a2b3c4d5e6f"


def call(url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def keyed_host(azurite_factory, tmp_path: Path) -> Iterator[tuple[str, Azurite]]:
    """The app under the local host with HTTP_AUTH_LEVEL=function and a key from the app settings."""
    azurite = azurite_factory()
    env = dict(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "HTTP_AUTH_LEVEL": "function",
            "LOCALHOST_FUNCTION_KEY": KEY,
            # The queue trigger stays off, so what the HTTP path stored stays on the queue to be counted.
            "AzureWebJobs.process.Disabled": "true",
        }
    )
    host, port = start_host(env, tmp_path / "host.log", without=("FUNCTIONS_HOST_KEY",))
    try:
        yield f"http://127.0.0.1:{port}", azurite
    finally:
        host.stop(signal.SIGTERM, timeout=15)


async def stored_messages(azurite: Azurite) -> int:
    async with queue_client(azurite.connection_string, "graph-notifications") as client:
        try:
            return (await client.get_queue_properties()).approximate_message_count
        except Exception:  # noqa: BLE001 - a queue never written to does not exist yet
            return 0


async def subscribe(azurite: Azurite) -> None:
    async with table_client(azurite.connection_string, "subscriptions") as client:
        store = SubscriptionStore(client)
        await store.setup()
        now = utcnow()
        record = SubscriptionRecord("k", "drives/d/root", "updated", SECRET, ACTIVE, now, SUBSCRIPTION)
        await store.save(record.activated(SUBSCRIPTION, now + timedelta(days=1), now))


def test_the_handshake_needs_the_key_too(keyed_host):
    url, _ = keyed_host
    token = "Validation: Testing client application reachability"
    query = urllib.parse.urlencode({"validationToken": token})

    assert call(f"{url}/api/notifications?{query}")[0] == 401
    assert call(f"{url}/api/notifications?{query}&code={KEY}") == (200, token.encode())
    assert call(f"{url}/api/lifecycle?{query}&code=wrong")[0] == 401


async def test_a_notification_without_the_key_is_refused_and_nothing_is_stored(keyed_host):
    url, azurite = keyed_host
    await subscribe(azurite)
    body = json.dumps(
        {"value": [{"subscriptionId": SUBSCRIPTION, "changeType": "updated", "clientState": SECRET}]}
    ).encode()

    assert call(f"{url}/api/notifications", body)[0] == 401
    assert await stored_messages(azurite) == 0

    assert call(f"{url}/api/notifications?code={KEY}", body)[0] == 202
    assert call(f"{url}/api/notifications", body, {"x-functions-key": KEY})[0] == 202
    assert await stored_messages(azurite) == 2
