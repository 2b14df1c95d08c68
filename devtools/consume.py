"""A consumer of change events: the smallest program that reads the `graph-changes` queue.

Copy it into your own service. Each message is one change event (JSON, base64-encoded
as the Functions host writes it, or with EVENT_FORMAT=cloudevents a CloudEvent holding
it in ``data``); see the README's "The change event". Delivery is at
least once: the same event can arrive twice, always with the same ``id``, so keep what
you do idempotent (or remember the ids you handled). Delete a message only once you
have handled it: if your program dies first, the message shows again after the
visibility timeout and is handled then.

    AzureWebJobsStorage='<connection string>' python -m devtools.consume

With `make run` going, the default connection (Azurite's development account) is right.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

from azure.storage.queue import QueueClient, TextBase64DecodePolicy

SETTING = "AzureWebJobsStorage"  # the function app's storage connection: the queue is in that account
# Azurite's well-known development account on its default ports (public, documented by Microsoft).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


def handle(event: dict[str, object]) -> None:
    """Your code goes here: this one prints one line per event."""
    item = event.get("item")
    name = item.get("name", "") if isinstance(item, dict) else ""
    print(event["changeType"], event["kind"], event["itemId"], name, f"(event {event['id']})", flush=True)


def consume(queue: QueueClient, count: int | None = None, idle_seconds: float = 1.0) -> int:
    """Handle events until ``count`` were handled (forever with None); returns how many."""
    handled = 0
    while count is None or handled < count:
        batch = 32 if count is None else min(32, count - handled)
        # Invisible to other consumers for 5 minutes: enough to handle a batch.
        messages = list(queue.receive_messages(messages_per_page=batch, max_messages=batch, visibility_timeout=300))
        for message in messages:
            event = json.loads(message.content)
            # EVENT_FORMAT=cloudevents: a CloudEvent whose data is the same event.
            handle(event["data"] if "specversion" in event else event)
            queue.delete_message(message)  # only after handling it: at least once
            handled += 1
        if not messages:
            time.sleep(idle_seconds)
    return handled


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m devtools.consume [--queue NAME] [--count N]`."""
    parser = argparse.ArgumentParser(prog="python -m devtools.consume", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", default="graph-changes", help="the queue to read (default graph-changes)")
    parser.add_argument("--count", type=int, help="stop after this many events (default: run until Ctrl-C)")
    args = parser.parse_args(argv)
    connection = os.environ.get(SETTING) or DEVELOPMENT_STORAGE
    queue = QueueClient.from_connection_string(connection, args.queue, message_decode_policy=TextBase64DecodePolicy())
    with queue, contextlib.suppress(KeyboardInterrupt):
        consume(queue, args.count)


if __name__ == "__main__":
    main()
