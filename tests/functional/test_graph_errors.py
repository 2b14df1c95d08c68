"""A Graph 404 names what is missing: a subscription only on a call on one subscription.

Graph answers a real HTTP 404 with its documented error body (ResourceNotFound); the gateway
goes through the SDK's own request adapter to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web

from devtools.launch import free_port
from shared.errors import NotFoundError, SubscriptionNotFoundError
from shared.graph import GraphGateway

# Graph's error shape (GD concepts/errors.md): {"error": {"code": ..., "message": ...}}.
NOT_FOUND = {"error": {"code": "ResourceNotFound", "message": "Resource not found."}}


@pytest.fixture
async def graph() -> AsyncIterator[tuple[GraphGateway, list[str]]]:
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient

    asked: list[str] = []

    async def missing(request: web.Request) -> web.Response:
        asked.append(f"{request.method} {request.path}")
        return web.json_response(NOT_FOUND, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = f"http://127.0.0.1:{port}/v1.0"
    yield GraphGateway(GraphServiceClient(request_adapter=adapter), attempts=1), asked
    await runner.cleanup()


async def test_a_404_to_a_delta_read_is_not_found_and_names_no_subscription(graph) -> None:
    gateway, _ = graph
    with pytest.raises(NotFoundError) as raised:
        await gateway.fetch_path("drives/gone/root/delta")
    assert not isinstance(raised.value, SubscriptionNotFoundError)
    assert raised.value.graph_status == 404


async def test_a_404_to_a_renewal_means_the_subscription_is_gone(graph) -> None:
    gateway, asked = graph
    with pytest.raises(SubscriptionNotFoundError):
        await gateway.renew_subscription("sub-1", datetime(2027, 1, 1, tzinfo=UTC))
    assert asked == ["PATCH /v1.0/subscriptions/sub-1"]


async def test_a_404_to_a_reauthorization_means_the_subscription_is_gone(graph) -> None:
    gateway, _ = graph
    with pytest.raises(SubscriptionNotFoundError):
        await gateway.reauthorize_subscription("sub-1")


async def test_deleting_a_subscription_graph_no_longer_has_counts_as_deleted(graph) -> None:
    gateway, asked = graph
    await gateway.delete_subscription("sub-1")
    assert asked == ["DELETE /v1.0/subscriptions/sub-1"]
