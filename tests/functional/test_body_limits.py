"""Size first, on every route: a body over the limit is refused before it is parsed, or even read.

The function app checks Content-Length before it touches the body, and the body's own length
before it parses it; the receiver the functional tests run (stacks.py) refuses an over-limit
body unread, as the Functions host does with FUNCTIONS_REQUEST_BODY_SIZE_LIMIT.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from shared.model.notifications import MAX_BODY_BYTES
from tests.functional.app_functions import FUNCTIONS
from tests.functional.stacks import Stack

ROUTES = ["notifications", "lifecycle", "sharepoint"]
# SharePoint-shaped items: a body of many small objects is the costliest to parse (95 MB took 8.1 GB).
ITEM = {
    "subscriptionId": "91779246-afe9-4525-b122-6c199ae89211",
    "clientState": "00000000-0000-0000-0000-000000000000",
    "expirationDateTime": "2026-05-20T17:32:27.000Z",
    "resource": "b9f6f714-9df8-470b-b22e-653855e1c181",
}


def large_batch(megabytes: int) -> bytes:
    one = json.dumps(ITEM, separators=(",", ":")).encode()
    count = megabytes * 1024 * 1024 // (len(one) + 1)
    return b'{"value":[' + b",".join([one] * count) + b"]}"


def post(route: str, body: bytes, headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("POST", f"http://localhost/api/{route}", headers=headers, body=body)


async def call_measured(route: str, request: func.HttpRequest) -> tuple[func.HttpResponse, float, int]:
    """The function's answer, the seconds it took, and the peak of memory it allocated meanwhile."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = await FUNCTIONS[route].get_user_function()(request)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return response, elapsed, peak


@pytest.fixture(scope="module")
def thirty_megabytes() -> bytes:
    return large_batch(30)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
async def test_a_thirty_megabyte_body_is_refused_413_at_once_without_being_parsed(
    azurite, monkeypatch, route, declared, thirty_megabytes
):
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    warm = await FUNCTIONS[route].get_user_function()(post(route, b"{}", {}))  # builds the clients once
    assert warm.status_code == 400
    headers = {"Content-Length": str(len(thirty_megabytes))} if declared else {}

    response, elapsed, peak = await call_measured(route, post(route, thirty_megabytes, headers))

    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.get_body().decode()
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    assert peak < 256 * 1024, f"{peak} bytes allocated for a body already in memory"


@pytest.mark.parametrize("route", ROUTES)
async def test_a_body_just_under_the_limit_is_still_parsed(azurite, monkeypatch, route):
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    body = json.dumps({"value": [{**ITEM, "padding": "x" * (MAX_BODY_BYTES - 400)}]}).encode()
    assert len(body) <= MAX_BODY_BYTES

    response = await FUNCTIONS[route].get_user_function()(post(route, body, {"Content-Length": str(len(body))}))

    assert response.status_code == 202  # parsed and checked: an unknown subscription, dropped


# --- over HTTP: the receiver answers before the body is sent ----------------------------------------


async def exchange(url: str, head: bytes, body_parts: int, part: bytes) -> tuple[bytes, int]:
    """Send ``head`` then up to ``body_parts`` of ``part`` until an answer comes; the answer and the parts sent."""
    target = urlsplit(url)
    reader, writer = await asyncio.open_connection(target.hostname, target.port)
    writer.write(head)
    sent = 0
    answer = asyncio.ensure_future(reader.read(4096))
    try:
        while sent < body_parts and not answer.done():
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break  # the receiver closed the connection after answering
            sent += 1
            await asyncio.sleep(0.005)  # paced: a receiver that answers at once has answered within a few parts
        return await asyncio.wait_for(answer, 10), sent
    finally:
        writer.close()


@pytest.fixture
async def receiver(stack_factory) -> Stack:
    return await stack_factory()


@pytest.mark.parametrize("route", ROUTES)
async def test_the_receiver_answers_413_before_a_declared_forty_megabytes_are_sent(receiver, route):
    url = receiver.env["NOTIFICATION_URL"].replace("/notifications", f"/{route}")
    total = 40 * 1024 * 1024
    head = f"POST {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode()
    part = b" " * (64 * 1024)

    answer, sent = await exchange(url, head, total // len(part), part)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    # Refused on the header: not even the first mebibyte was waited for.
    assert sent * len(part) < MAX_BODY_BYTES, f"{sent * len(part)} bytes sent before the answer"


async def test_the_receiver_cuts_a_chunked_body_off_at_the_limit(receiver):
    url = receiver.env["NOTIFICATION_URL"].replace("/notifications", "/sharepoint")
    head = f"POST {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunk = b" " * (64 * 1024)
    part = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"  # never the closing zero-length chunk

    answer, sent = await exchange(url, head, 640, part)  # 40 MiB if it were all sent

    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    # No size announced: read up to the limit, then refused, never buffered whole.
    assert sent * len(chunk) < 4 * MAX_BODY_BYTES, f"{sent * len(chunk)} bytes sent before the answer"
