"""stub"""

from __future__ import annotations

from .report import Row

NAME = "startup"


async def run(quick: bool) -> list[Row]:
    return []
