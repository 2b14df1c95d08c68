"""Sinks: the signed forward's throughput and latency, and the blob mirror's speed and memory.

In process, like the functional tests: Azurite, a local receiver (or the Graph
simulator) and the sink runners driven the way the host drives a queue trigger
(16 messages at a time).
- forward: events written by the outlet, delivered and verified by a local receiver
  (standardwebhooks); latency is from the event's emission to its verified arrival;
  the baseline is direct signed POSTs of the same bodies, 16 at a time.
- mirror: one generated file in the simulator mirrored into Azurite (on disk), against
  a plain streaming upload of the same bytes; peak memory is this process's resident
  memory during the mirror, minus what it held before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from .harness import Background, own_azurite, serving
from .memory import rss_bytes
from .report import Row, ms, percentile, rate, ratio, say

NAME = "sinks"
PAGE = 50
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "tests" / "payloads" / "sink-event-created.json").read_text()
)


async def _pump(runner: Any, connection: str, queue: str, done: Any, limit: float) -> None:
    from shared.stores.clients import queue_client

    deadline = time.monotonic() + limit
    async with queue_client(connection, queue) as client:
        while not done() and time.monotonic() < deadline:
            batch = [
                m async for m in client.receive_messages(messages_per_page=16, max_messages=16, visibility_timeout=60)
            ]

            async def one(message: Any) -> None:
                await runner.handle(message.content, message.dequeue_count)
                await client.delete_message(message)

            await asyncio.gather(*(one(m) for m in batch))
            if not batch:
                await asyncio.sleep(0.02)


async def forward(quick: bool) -> list[Row]:
    """Events per second through the outlet, the sink queue and the signed POST."""
    from azure.core.exceptions import ResourceExistsError
    from standardwebhooks import Webhook

    from devtools.azurite import free_port
    from shared.app.sinks import build_sinks
    from shared.clock import format_time, parse_time, utcnow
    from shared.queues.message_queue import MessageQueue
    from shared.sinks.webhook import WebhookForward
    from shared.stores.clients import queue_client
    from shared.sync.fanout import EventFanout

    count = 300 if quick else 2000
    latencies: list[float] = []
    verifier = Webhook(SECRET)

    async def receive(request: web.Request) -> web.Response:
        payload = verifier.verify(await request.text(), dict(request.headers))
        latencies.append((utcnow() - parse_time(payload["observedAt"])).total_seconds())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with serving(app, free_port()) as base, own_azurite() as azurite:
        sinks = [{"type": "webhook", "url": f"{base}/hook", "secret": SECRET, "name": "bench-hook"}]
        runtime = await build_sinks({"AzureWebJobsStorage": azurite.connection_string, "SINKS": json.dumps(sinks)})
        try:
            forward_sink = runtime.runner("bench-hook").sink
            assert isinstance(forward_sink, WebhookForward)
            # Baseline: the same signed POSTs sent directly, 16 at a time.
            gate = asyncio.Semaphore(16)

            async def direct(n: int) -> None:
                async with gate:
                    await forward_sink.post({**EVENT, "id": f"direct-{n}", "observedAt": format_time(utcnow())})

            started = time.monotonic()
            await asyncio.gather(*(direct(n) for n in range(count)))
            direct_rate = count / (time.monotonic() - started)
            latencies.clear()
            async with (
                queue_client(azurite.connection_string, "graph-changes") as changes,
                queue_client(azurite.connection_string, "bench-hook") as sink_queue,
            ):
                for client in (changes, sink_queue):
                    with contextlib.suppress(ResourceExistsError):
                        await client.create_queue()
                outlet = EventFanout(MessageQueue(changes), [MessageQueue(sink_queue)])
                started = time.monotonic()

                async def emit() -> None:
                    # Page by page, as the synchronizer sends them; each page's events are stamped when sent.
                    for first in range(0, count, PAGE):
                        stamp = format_time(utcnow())
                        await outlet.send_all(
                            json.dumps({**EVENT, "id": f"e{n}", "itemId": f"i{n}", "observedAt": stamp})
                            for n in range(first, min(first + PAGE, count))
                        )

                emitter = asyncio.create_task(emit())
                await _pump(
                    runtime.runner("bench-hook"),
                    azurite.connection_string,
                    "bench-hook",
                    lambda: len(latencies) >= count,
                    300,
                )
                await emitter
                elapsed = time.monotonic() - started
        finally:
            await runtime.close()
    through = len(latencies) / elapsed
    say(f"   forward: {len(latencies)}/{count} delivered in {elapsed:.1f} s")
    return [
        Row(
            NAME,
            f"forward: {count} events, emission -> verified delivery",
            rate(through, "events/s"),
            rate(direct_rate, "POST/s"),
            ratio(through, direct_rate),
        ),
        Row(NAME, "forward: latency p50 / p99", f"{ms(percentile(latencies, 50))} / {ms(percentile(latencies, 99))}"),
    ]


async def mirror(quick: bool) -> list[Row]:
    """MB/s of the blob mirror for one large file, against a plain upload, and its peak memory."""
    from azure.storage.blob.aio import ContainerClient

    from devtools.launch import start_simulator
    from devtools.simclient import SimControl
    from shared.app.sinks import build_sinks
    from shared.sinks.mirror import RANGE

    size = (200 if quick else 2048) * 1024 * 1024
    drive = "b!bench-mirror"
    with tempfile.TemporaryDirectory() as scratch:
        async with own_azurite(Path(scratch) / "azurite") as azurite:
            sim = start_simulator(Path(scratch) / "sim")
            try:
                async with SimControl(sim.control_url) as control:
                    await control.create_drive(drive)
                    made = await control.generate_items(drive, 1, folders=1, size_bytes=size, prefix="big")
                (item_id,) = made["sampleIds"]
                env = {
                    "AzureWebJobsStorage": azurite.connection_string,
                    "NOTIFICATION_URL": "https://example.org/api/notifications",
                    "LIFECYCLE_NOTIFICATION_URL": "https://example.org/api/lifecycle",
                    "SINKS": json.dumps([{"type": "blob", "container": "mirror", "name": "bench-mirror"}]),
                    **sim.settings(),
                }
                runtime = await build_sinks(env)
                event = {
                    **EVENT,
                    "containerId": drive,
                    "itemId": item_id,
                    "id": "bench-big",
                    "item": {"id": item_id, "name": "big", "file": {}},
                }
                before = rss_bytes(os.getpid())
                peak = before

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_bytes(os.getpid()))
                        await asyncio.sleep(0.05)

                async with Background(sample()):
                    started = time.monotonic()
                    await runtime.runner("bench-mirror").sink.deliver([event])
                    mirror_seconds = time.monotonic() - started
                await runtime.close()
                # Baseline: the same bytes, generated range by range, in one plain streaming upload.
                import hashlib

                block = hashlib.sha256(item_id.encode()).digest()

                def chunks() -> Any:
                    for start in range(0, size, RANGE):
                        count = min(RANGE, size - start)
                        offset = start % len(block)
                        yield (block * ((offset + count) // len(block) + 1))[offset : offset + count]

                async with ContainerClient.from_connection_string(azurite.connection_string, "mirror") as container:
                    started = time.monotonic()
                    await container.upload_blob("plain", chunks(), length=size, overwrite=True)
                    plain_seconds = time.monotonic() - started
            finally:
                sim.stop()
    megabytes = size / 1024 / 1024
    mirror_rate, plain_rate = megabytes / mirror_seconds, megabytes / plain_seconds
    return [
        Row(
            NAME,
            f"mirror: one {megabytes:,.0f} MB file, Graph -> blob",
            rate(mirror_rate, "MB/s"),
            rate(plain_rate, "MB/s"),
            ratio(mirror_rate, plain_rate),
        ),
        Row(
            NAME,
            "mirror: peak memory above the start",
            f"{(peak - before) / 1024 / 1024:,.0f} MB",
            goal="bounded by a few 8 MiB ranges",
            met=(peak - before) < 256 * 1024 * 1024,
        ),
    ]


async def run(quick: bool) -> list[Row]:
    """Both sink benchmarks."""
    rows = await forward(quick)
    try:
        rows += await mirror(quick)
    except Exception as exc:  # noqa: BLE001 - the forward's figures still count
        rows.append(Row(NAME, "mirror", f"ERROR {type(exc).__name__}: {exc}"[:100], met=False))
    return rows
