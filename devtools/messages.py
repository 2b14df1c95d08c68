"""Read JSON messages off a Storage queue the way a queue-triggered consumer would."""

from __future__ import annotations

import json
from typing import Any

from shared.stores.clients import queue_client


async def receive_json(connection: str, queue: str, delete: bool = True, limit: int = 10_000) -> list[dict[str, Any]]:
    """Take every visible message (base64 JSON) off ``queue``; a missing queue is empty."""
    from azure.core.exceptions import ResourceNotFoundError

    found: list[dict[str, Any]] = []
    client = queue_client(connection, queue)
    async with client:
        try:
            while len(found) < limit:
                batch = [m async for m in client.receive_messages(messages_per_page=32, max_messages=32)]
                if not batch:
                    break
                for message in batch:
                    found.append(json.loads(message.content))
                    if delete:
                        await client.delete_message(message)
        except ResourceNotFoundError:
            return found
    return found


async def peek_count(connection: str, queue: str) -> int:
    """How many messages a queue holds (approximate, as Storage reports it); 0 if missing."""
    from azure.core.exceptions import ResourceNotFoundError

    client = queue_client(connection, queue)
    async with client:
        try:
            properties = await client.get_queue_properties()
        except ResourceNotFoundError:
            return 0
    return int(properties.approximate_message_count or 0)
