"""Baselines: what Azurite itself does with the writes a benchmark's code path makes, timed the same way."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared.stores.clients import queue_client, table_client

from .harness import own_azurite


async def raw_enqueue(text: str, count: int) -> float:
    """Messages per second of sequential send_message calls from this process, on a fresh Azurite (after a warm-up)."""
    async with own_azurite() as azurite, queue_client(azurite.connection_string, "bench-raw") as client:
        await client.create_queue()
        for _ in range(max(count // 4, 100)):  # a fresh Azurite is slow until Node has compiled its paths
            await client.send_message(text)
        started = time.perf_counter()
        for _ in range(count):
            await client.send_message(text)
        return count / (time.perf_counter() - started)


async def raw_send_rate(connection: str, text: str, count: int, senders: int = 16) -> float:
    """Messages per second of ``senders`` concurrent send_message calls on one client (after a warm-up)."""
    async with queue_client(connection, "bench-raw-sends") as client:
        await client.create_queue()

        async def send(n: int) -> None:
            gate = asyncio.Semaphore(senders)

            async def one() -> None:
                async with gate:
                    await client.send_message(text)

            await asyncio.gather(*(one() for _ in range(n)))

        await send(max(count // 10, 50))
        started = time.perf_counter()
        await send(count)
        seconds = time.perf_counter() - started
        await client.delete_queue()
    return count / seconds


async def raw_transaction_rate(connection: str, entities: int, concurrent: int = 4) -> float:
    """Entities per second upserted in transactions of 100, ``concurrent`` transactions at once.

    The rows are shaped like the item index's and go to one partition, as a drive's do.
    """

    def batch(start: int) -> list[tuple[str, dict[str, Any]]]:
        return [
            (
                "upsert",
                {
                    "PartitionKey": "bench-raw",
                    "RowKey": f"item-{n:09d}",
                    "ItemId": f"item-{n:09d}",
                    "Version": '"{0123456789ABCDEF},1"',
                    "Deleted": False,
                    "Pass": "0123456789abcdef0123456789abcdef",
                },
            )
            for n in range(start, start + 100)
        ]

    async with table_client(connection, "benchrawtransactions") as client:
        await client.create_table()
        gate = asyncio.Semaphore(concurrent)

        async def one(start: int) -> None:
            async with gate:
                await client.submit_transaction(batch(start))  # type: ignore[arg-type]

        await asyncio.gather(*(one(n) for n in range(0, max(entities // 10, 500), 100)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(10_000_000, 10_000_000 + entities, 100)))
        seconds = time.perf_counter() - started
        await client.delete_table()
    return entities / seconds
