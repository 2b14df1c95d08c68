"""Builds each configured sink with its queue, poison queue and stores: one runner per sink queue."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import utcnow
from shared.config.sinks import parse_sinks
from shared.config.storage import storage_connection
from shared.model.connection import StorageConnection
from shared.model.sinks import BlobSink, Delivery, SinkConfig, WebhookSink
from shared.queues.message_queue import MessageQueue
from shared.sinks.runner import SinkRunner

if TYPE_CHECKING:
    from shared.app.tenant_graphs import TenantGraphs
    from shared.config.settings import Settings
    from shared.graph import GraphGateway
    from shared.reconcile.reconciler import Reconciler

_PATIENT = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
_PATIENT_TABLE = {"retry_total": 3, "retry_backoff_factor": 0.5}


@dataclass
class SinkRuntime:
    """The runners by queue name, and what to close."""

    runners: dict[str, SinkRunner]
    closers: list[Any]

    def runner(self, queue: str) -> SinkRunner:
        """The runner of a sink queue; KeyError if no sink uses it."""
        return self.runners[queue]

    async def close(self) -> None:
        """Close every sink and storage client."""
        for runner in self.runners.values():
            await runner.sink.close()
        for client in self.closers:
            await client.close()


async def build_sinks(
    environ: Mapping[str, str], tempo: float = 1.0, clock: Callable[[], datetime] = utcnow
) -> SinkRuntime:
    """Build a runner for each entry of SINKS.

    Tests pass a clock, to play hours of an outage, and a ``tempo`` below 1 to shorten the
    real waits between tries (the horizon is kept: it is read on the clock).
    """
    from shared.stores.clients import storage_credential

    connection = storage_connection(environ)
    runtime = SinkRuntime({}, [])
    token = storage_credential(connection)
    if token is not None:
        runtime.closers.append(token)
    for config in parse_sinks(environ):
        parts = await _parts(config, connection, token, runtime, environ, tempo)
        policy = config.delivery.policy.scaled(tempo)
        runtime.runners[config.delivery.queue] = SinkRunner(*parts, policy=policy, clock=clock)
    return runtime


async def _parts(
    config: SinkConfig,
    connection: StorageConnection,
    token: Any,
    runtime: SinkRuntime,
    environ: Mapping[str, str],
    tempo: float,
) -> tuple[Any, Delivery, MessageQueue, MessageQueue]:
    """The sink, its delivery settings, its queue and its poison queue."""
    from shared.stores.clients import queue_client, table_client

    def own(client: Any) -> Any:
        runtime.closers.append(client)
        return client

    queue = MessageQueue(own(queue_client(connection, config.delivery.queue, token, **_PATIENT)))
    poison = MessageQueue(own(queue_client(connection, config.delivery.poison_queue, token, **_PATIENT)))
    sink: Any
    if isinstance(config, WebhookSink):
        from shared.sinks.ordering import ORDER_TABLE, OrderBook
        from shared.sinks.webhook import WebhookForward

        table = own(table_client(connection, ORDER_TABLE, token, **_PATIENT_TABLE))
        order = OrderBook(table, config.delivery.queue, wait=tempo, by_tenant=_multi(environ))
        await order.setup()
        sink = WebhookForward(config, order)
    elif isinstance(config, BlobSink):
        sink = await _mirror(config, connection, token, own, environ, tempo)
    else:
        from shared.sinks.teams import BATCH_TABLE, TeamsSummary

        summary = TeamsSummary(config, own(table_client(connection, BATCH_TABLE, token, **_PATIENT_TABLE)), queue)
        await summary.setup()
        sink = summary
    return sink, config.delivery, queue, poison


def _multi(environ: Mapping[str, str]) -> bool:
    """TENANT_MODE=multi: the sinks' rows are kept by tenant."""
    from shared.config.tenants import tenant_mode
    from shared.model.tenant import MULTI

    return tenant_mode(environ) == MULTI


async def _tenant_graphs(settings: Settings, own: Callable[[Any], Any]) -> TenantGraphs:
    """Every tenant's Graph client, built on first use; the mirror reads files only (no sources, no reconciler)."""
    from shared.app.credentials import tenants_credentials
    from shared.app.tenant_graphs import TenantGraphs
    from shared.graph import graph_scope
    from shared.model.changes import SourceRegistry

    credentials = own(await tenants_credentials(settings))
    graphs: TenantGraphs = own(
        TenantGraphs(
            credentials(),
            graph_scope(settings.graph_base_url),
            settings.graph_base_url,
            lambda graph: SourceRegistry(()),
            _no_reconciler,
            fresh=credentials,
        )
    )
    return graphs


def _no_reconciler(tenant: str, graph: GraphGateway) -> Reconciler:
    from shared.errors import UnsupportedResourceError

    raise UnsupportedResourceError("the blob mirror keeps no subscriptions")


async def _mirror(
    config: BlobSink, connection: StorageConnection, token: Any, own: Any, environ: Mapping[str, str], tempo: float
) -> Any:
    """The blob mirror reads files through Graph, so it needs the Graph settings too."""
    from azure.storage.blob.aio import ContainerClient

    from shared.app.credentials import build_client
    from shared.config.settings import Settings
    from shared.graph import GraphGateway
    from shared.sinks.mirror import MIRROR_TABLE, BlobMirror
    from shared.sinks.ordering import ORDER_TABLE, OrderBook
    from shared.stores.clients import expand_connection, storage_credential, table_client

    settings = Settings.from_env(environ)
    graph: GraphGateway | None = None
    tenant_graphs: Callable[[str], GraphGateway] | None = None
    if settings.multi_tenant:
        # Each event's tenant's files are read with a token from that tenant's authority.
        graphs = await _tenant_graphs(settings, own)
        tenant_graphs = lambda tenant: graphs.graph(tenant).gateway  # noqa: E731
    else:
        client, credential = build_client(settings)
        own(credential)
        graph = GraphGateway(client)
    blobs = config.connection
    if blobs.connection_string is not None:
        container = ContainerClient.from_connection_string(expand_connection(blobs.connection_string), config.container)
    else:
        # Identity-based: the app's credential for its own account, a credential of its own for another.
        blob_token = token if blobs == connection else own(storage_credential(blobs))
        assert blobs.blob_service_uri is not None  # storage_connection guarantees it for services=("blob",)
        container = ContainerClient(blobs.blob_service_uri, config.container, credential=blob_token)
    own(container)
    index = own(table_client(connection, MIRROR_TABLE, token, **_PATIENT_TABLE))
    order_table = own(table_client(connection, ORDER_TABLE, token, **_PATIENT_TABLE))
    order = OrderBook(order_table, config.delivery.queue, tempo, by_tenant=settings.multi_tenant)
    mirror = BlobMirror(config, graph, settings.graph_base_url, container, index, order, tenant_graphs)
    await mirror.setup()
    return mirror
