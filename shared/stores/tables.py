"""Shared helpers for the Table storage adapters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

Operation = tuple[str, dict[str, Any]]
# Table storage's limit for one transaction.
TRANSACTION_LIMIT = 100


async def ensure_table(client: TableClient) -> None:
    """Create the table if it does not exist yet."""
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        await client.create_table()


def quote_filter(value: str) -> str:
    """Quote a string literal for an OData filter."""
    return "'" + value.replace("'", "''") + "'"


def prefix_filter(column: str, prefix: str) -> str:
    """An OData filter for the rows whose ``column`` begins with ``prefix`` (a range: keys sort ordinally)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"{column} ge {quote_filter(prefix)} and {column} lt {quote_filter(upper)}"


def batches(operations: list[Operation]) -> Iterator[list[Operation]]:
    """``operations`` in transactions of at most TRANSACTION_LIMIT, in order (all of one partition)."""
    for start in range(0, len(operations), TRANSACTION_LIMIT):
        yield operations[start : start + TRANSACTION_LIMIT]


async def submit_batches(client: TableClient, operations: list[Operation]) -> None:
    """Every operation, one transaction after another."""
    for batch in batches(operations):
        await submit_batch(client, batch)


async def submit_batch(client: TableClient, batch: list[Operation]) -> None:
    """One transaction of upserts and deletes; if it fails (a delete of a row already gone fails
    the whole batch), the same operations one by one, a missing row counting as deleted."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableTransactionError

    try:
        await client.submit_transaction(batch)  # type: ignore[arg-type]
    except TableTransactionError:
        for operation, entity in batch:
            if operation == "upsert":
                await client.upsert_entity(entity)
            else:
                with contextlib.suppress(ResourceNotFoundError):
                    await client.delete_entity(entity["PartitionKey"], entity["RowKey"])
