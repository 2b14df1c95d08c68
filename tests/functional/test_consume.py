"""The consumer example (devtools/consume.py) against Azurite: it handles events and deletes them, no more."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from devtools.messages import peek_count
from shared.stores.clients import queue_client

ROOT = Path(__file__).resolve().parents[2]


def _event(n: int) -> dict[str, object]:
    return {
        "id": f"event-{n}",
        "kind": "driveItem",
        "changeType": "created",
        "itemId": f"item-{n}",
        "item": {"name": f"file-{n}.txt"},
    }


async def consume(connection: str, queue: str, count: int) -> subprocess.CompletedProcess[str]:
    """Run the sample consumer on ``queue`` for ``count`` events, as a user would."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "devtools.consume", "--queue", queue, "--count", str(count)],
        cwd=ROOT,
        env={**os.environ, "AzureWebJobsStorage": connection},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_consumer_prints_each_event_and_takes_only_what_it_handled(azurite, unique_name):
    queue = unique_name("changes")
    async with queue_client(azurite.connection_string, queue) as client:  # base64, as the app writes
        await client.create_queue()
        for n in range(3):
            await client.send_message(json.dumps(_event(n)))
    done = await consume(azurite.connection_string, queue, 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "created driveItem item-0 file-0.txt (event event-0)",
        "created driveItem item-1 file-1.txt (event event-1)",
    ]
    assert await peek_count(azurite.connection_string, queue) == 1  # the third is left for the next run


async def test_the_consumer_reads_cloudevents_too(azurite, unique_name):
    from shared.model.event_formats import structured_json

    queue = unique_name("changes")
    event = _event(7) | {"resource": "drives/b!d/root", "observedAt": "2026-11-22T10:00:01.123456Z"}
    async with queue_client(azurite.connection_string, queue) as client:
        await client.create_queue()
        await client.send_message(structured_json(event))
    done = await consume(azurite.connection_string, queue, 1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["created driveItem item-7 file-7.txt (event event-7)"]
