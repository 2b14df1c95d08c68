"""Shared helpers for the Table storage adapters."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient


async def ensure_table(client: TableClient) -> None:
    """Create the table if it does not exist yet."""
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        await client.create_table()


def quote_filter(value: str) -> str:
    """Quote a string literal for an OData filter."""
    return "'" + value.replace("'", "''") + "'"
