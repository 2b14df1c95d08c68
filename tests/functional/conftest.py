"""Fixtures of the functional tests: the in-process pipeline stack, and a local server for webhook receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from devtools.azurite import free_port
from tests.functional.stacks import stack_factory

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["stack_factory"]


@pytest.fixture
async def hook_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve a POST handler on a local port (a sink's webhook receiver): returns its URL; stopped at the end."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        port = free_port()
        app = web.Application()
        app.router.add_post("/hook", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}/hook"

    yield serve
    for runner in runners:
        await runner.cleanup()
