"""stub"""

from __future__ import annotations

from .report import Row

NAME = "renewal"


async def run(quick: bool) -> list[Row]:
    return []
