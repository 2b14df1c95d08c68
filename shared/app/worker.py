"""The queue and timer triggers' objects: sources, synchronizer, reconcilers, sweeper."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from shared import telemetry
from shared.app.clients import FAST, PATIENT, PATIENT_TABLE, changes_client, refusal_flusher, storage_token
from shared.app.encryption import certificate_book, encryption_for, resource_data_reader
from shared.app.lazy import Owned
from shared.config.settings import Settings
from shared.model.names import CURSORS_TABLE, ITEMS_TABLE, MEMBERS_TABLE, SUBSCRIPTIONS_TABLE
from shared.model.resources import DesiredSubscription

log = logging.getLogger(__name__)
# Writes in flight per tenant's reconciler in a multi-tenant deployment.
TENANT_WRITES = 8

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.processor import Processor
    from shared.queues.message_queue import MessageQueue
    from shared.reconcile.reconciler import Reconciler
    from shared.reconcile.sweeper import Sweeper
    from shared.sharepoint.client import SharePointClient
    from shared.stores.desired import DesiredStore
    from shared.sync.synchronizer import Synchronizer
    from shared.tenants.renewal import TenantRenewal
    from shared.tenants.work import TenantWork


@dataclass(frozen=True)
class Worker:
    """What the queue and timer triggers use."""

    settings: Settings
    processor: Processor
    # Graph's reconciler; None with TENANT_MODE=multi, where each tenant has its own (``tenants``).
    reconciler: Reconciler | None
    resources: Owned
    sweeper: Sweeper
    # The reconciler of SharePoint's own list webhooks (SHAREPOINT_SUBSCRIPTIONS); build_worker always sets it.
    sharepoint: Reconciler | None = None
    # Desired subscriptions added at run time (graphhooks desired), reconciled with GRAPH_SUBSCRIPTIONS.
    desired: DesiredStore | None = None
    # TENANT_MODE=multi: the per-tenant tick, in place of the one reconciler's.
    tenants: TenantRenewal | None = None

    async def close(self) -> None:
        """Close the storage clients and the Graph credential."""
        await self.resources.close()

    async def renew(self, now: datetime) -> None:
        """The renew timer's tick: Graph's subscriptions, SharePoint's, then the safety sweep.

        The desired subscriptions are GRAPH_SUBSCRIPTIONS (the seed) and the table that
        `graphhooks desired` manages; the table wins. The sweep needs only storage, so it
        runs even when Graph could not be reached.
        """
        from shared.stores.desired import desired_subscriptions

        try:
            desired = await desired_subscriptions(self.settings.subscriptions, self.desired)
            if self.tenants is not None:
                await self.tenants.tick(desired, now)
                return
            if self.reconciler is not None:
                await self.reconciler.reconcile(desired, now)
            if self.sharepoint is not None:
                await self.sharepoint.reconcile(sharepoint_desired(self.settings), now)
        finally:
            await self.sweeper.sweep(now)


async def build_worker(environ: Mapping[str, str]) -> Worker:
    """Read the settings and build the Graph, table and queue adapters."""
    from shared.app.credentials import build_client, tenants_credentials
    from shared.app.tenant_graphs import TenantGraphs
    from shared.graph import GraphGateway, graph_scope
    from shared.model.changes import ChangeSource, SourceRegistry
    from shared.processor import Processor
    from shared.queues.message_queue import MessageQueue
    from shared.reconcile.reconciler import CONCURRENCY, Endpoints, Reconciler
    from shared.reconcile.subscription_sets import SubscriptionSets
    from shared.reconcile.sweeper import Sweeper
    from shared.sources.directory import DirectorySource
    from shared.sources.drives import DriveSource
    from shared.sources.list_items import ListSource
    from shared.sources.teams import TeamsMessageSource
    from shared.stores.clients import queue_client, table_client
    from shared.stores.cursors import CursorStore
    from shared.stores.items import ItemIndex
    from shared.stores.members import MemberStore
    from shared.stores.subscriptions import SubscriptionStore
    from shared.sync.synchronizer import Synchronizer

    settings = Settings.from_env(environ)
    telemetry.configure(environ)
    connection = settings.storage_connection
    owned = Owned()
    if settings.ignored_tenant_id:
        log.warning("GRAPH_TENANT_ID is set but not used: TENANT_MODE=multi signs in to each tenant's own authority")
    token = storage_token(connection, owned)
    # The worker's flusher also deletes old rows: one pruner per deployment suffices.
    refusal_flusher(environ, owned, connection, token, prune=True)
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **PATIENT_TABLE)))
    cursors = CursorStore(owned.own(table_client(connection, CURSORS_TABLE, token, **PATIENT_TABLE)))
    index = ItemIndex(owned.own(table_client(connection, ITEMS_TABLE, token, **PATIENT_TABLE)))
    members = MemberStore(owned.own(table_client(connection, MEMBERS_TABLE, token, **PATIENT_TABLE)))
    for table in (store, cursors, index, members):
        await table.setup()
    from shared.queues.claims import claims_for

    # The queue trigger redeems the claims the HTTP path queued for items over 48 KiB (queues/claims.py).
    claims = claims_for(connection, token, **PATIENT)
    notifications = MessageQueue(
        owned.own(queue_client(connection, settings.notifications_queue, token, **PATIENT)),
        claims=owned.own(claims) if claims is not None else None,
    )
    poison = MessageQueue(
        owned.own(queue_client(connection, f"{settings.notifications_queue}-poison", token, **PATIENT))
    )
    changes = MessageQueue(owned.own(changes_client(settings, token, owned, **PATIENT)))
    from shared.config.sinks import sink_queues, sink_tenants
    from shared.model.names import TAPS_TABLE
    from shared.stores.taps import TapFeed, TapStore
    from shared.sync.fanout import EventFanout

    # Taps (graphhooks events tail) get a best-effort copy; plain clients: a tap queue is never re-created.
    taps = owned.own(
        TapFeed(
            TapStore(owned.own(table_client(connection, TAPS_TABLE, token, **PATIENT_TABLE))),
            lambda name: queue_client(connection, name, token, **FAST),
        )
    )
    # Every event reaches graph-changes first, then each sink's own queue (SINKS).
    fanout = EventFanout(
        changes,
        [MessageQueue(owned.own(queue_client(connection, q, token, **PATIENT))) for q in sink_queues(environ)],
        taps=taps,
        tenants=sink_tenants(environ),
        event_format=settings.event_format,
    )
    from shared.app.credentials import build_sharepoint_client
    from shared.sharepoint.subscriptions import StoreView
    from shared.sources.sharepoint_changes import SharePointListSource

    # SharePoint's own list webhooks: their REST API (certificate or managed identity), one more source.
    sharepoint_client = owned.own(await build_sharepoint_client(settings))
    from shared.model.names import SOURCE_STATE_TABLE
    from shared.sources.outlook import outlook_sources
    from shared.stores.source_state import SourceStateStore

    # What sources keep besides their link (the all-folder mail walk's per-folder deltaLinks),
    # committed by the synchronizer with each page.
    source_state = SourceStateStore(owned.own(table_client(connection, SOURCE_STATE_TABLE, token, **PATIENT_TABLE)))
    await source_state.setup()

    def graph_sources(graph: GraphGateway) -> list[ChangeSource]:
        return [
            DriveSource(graph),
            ListSource(graph),
            DirectorySource(graph, "users"),
            DirectorySource(graph, "groups"),
            *outlook_sources(graph, settings.calendar_window_days_past, settings.calendar_window_days_ahead),
            TeamsMessageSource(),
        ]

    certificates = await certificate_book(settings)
    # Graph's reconcilers see only Graph's records; SharePoint's reconciler has the rest.
    records_table = owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **PATIENT_TABLE))

    def graph_reconciler(graph: GraphGateway, tenant: str = "") -> Reconciler:
        return Reconciler(
            graph,
            StoreView(records_table, sharepoint=False, tenant=tenant or None),
            synchronizer,
            notifications,
            Endpoints(settings.notification_url, settings.lifecycle_notification_url),
            full_initial_sync=settings.initial_sync == "full",
            sets=SubscriptionSets(graph, members, tenant),
            encryption_for=encryption_for(settings, certificates),
            tenant=tenant,
            # Many tenants reconcile at once on one connection pool: 8 writes in flight each still meet
            # Graph's per-tenant budget (500 per 20 s at a few hundred milliseconds a write).
            concurrency=TENANT_WRITES if tenant else CONCURRENCY,
        )

    graphs: TenantGraphs | None = None
    if settings.multi_tenant:
        # The app's secret, certificate or federated managed identity; TenantGraphs closes the first credential.
        credentials = owned.own(await tenants_credentials(settings))
        graphs = owned.own(
            TenantGraphs(
                credentials(),
                graph_scope(settings.graph_base_url),
                settings.graph_base_url,
                lambda graph: SourceRegistry(graph_sources(graph)),
                lambda tenant, graph: graph_reconciler(graph, tenant),
                fresh=credentials,
            )
        )
        sources: SourceRegistry = graphs
        # Every tenant has its own reconciler, kept with its Graph client (its write budget lives there).
        reconciler_of: Callable[[str], Reconciler] = lambda tenant: graphs.graph(tenant).reconciler  # noqa: E731
    else:
        client, credential = build_client(settings)
        owned.own(credential)
        graph = GraphGateway(client)
        sources = SourceRegistry([SharePointListSource(sharepoint_client), *graph_sources(graph)])
    synchronizer = Synchronizer(
        cursors, index, sources, fanout, notifications, source_state, tenant_id=settings.tenant_id
    )
    reconciler: Reconciler | None = None
    if graphs is None:
        single = reconciler = graph_reconciler(graph)
        reconciler_of = lambda _tenant: single  # noqa: E731
    from shared.model.names import DESIRED_TABLE
    from shared.stores.desired import DesiredStore, desired_subscriptions

    desired = DesiredStore(owned.own(table_client(connection, DESIRED_TABLE, token, **PATIENT_TABLE)))
    renewal: TenantRenewal | None = None
    work: TenantWork | None = None
    if graphs is not None:
        from shared.app.tenancy import build_tenancy

        renewal, work = await build_tenancy(
            settings,
            owned,
            token,
            graphs,
            synchronizer,
            fanout,
            desired,
            members,
            lambda: desired_subscriptions(settings.subscriptions, desired),
        )
    processor = Processor(
        store,
        synchronizer,
        reconciler_of,
        notifications,
        poison,
        resource_data=resource_data_reader(certificates, settings),
        tenants=work,
    )
    sweeper = Sweeper(store, cursors, notifications, settings.sweep_after)
    sharepoint = sharepoint_reconciler(
        settings,
        lambda: owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **PATIENT_TABLE)),
        synchronizer,
        notifications,
        sharepoint_client,
    )
    return Worker(
        settings, processor, reconciler, owned, sweeper, sharepoint=sharepoint, desired=desired, tenants=renewal
    )


def sharepoint_reconciler(
    settings: Settings,
    table: Callable[[], TableClient],
    synchronizer: Synchronizer,
    notifications: MessageQueue,
    client: SharePointClient,
) -> Reconciler:
    """The Reconciler for SHAREPOINT_SUBSCRIPTIONS: SharePoint's API, and the table's SharePoint records."""
    from shared.reconcile.reconciler import Endpoints, Reconciler
    from shared.sharepoint.subscriptions import SharePointSubscriptions, StoreView

    store = StoreView(table(), sharepoint=True)
    gateway = SharePointSubscriptions(client, store, settings.sharepoint_subscriptions)
    url = settings.sharepoint_notification_url
    return Reconciler(
        gateway,
        store,
        synchronizer,
        notifications,
        Endpoints(url, url),
        full_initial_sync=settings.initial_sync == "full",
        service="sharepoint",
    )


def sharepoint_desired(settings: Settings) -> list[DesiredSubscription]:
    """SHAREPOINT_SUBSCRIPTIONS as the Reconciler's desired subscriptions."""
    return [DesiredSubscription(target.resource, "updated") for target in settings.sharepoint_subscriptions]
