"""Builds the adapters from the settings, once per process and event loop.

The import stays cheap: SDKs load on first use, so a cold start can answer
Graph's handshake before any of them is imported.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared import telemetry
from shared.ingest import Ingest, SecretBook
from shared.model.names import CURSORS_TABLE, ITEMS_TABLE, MEMBERS_TABLE, NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE
from shared.settings import Settings, storage_connection

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.queue.aio import QueueClient

    from shared.health import HealthMonitor
    from shared.model.connection import StorageConnection
    from shared.processor import Processor
    from shared.renewer import Renewer
    from shared.security.certificates import CertificateBook, NotificationCertificate
    from shared.security.resource_data import ResourceDataReader
    from shared.security.tokens import TokenGate
    from shared.settings import CertificateSource
    from shared.stores.desired import DesiredStore
    from shared.stores.refusals import RefusalFlusher
    from shared.sweeper import Sweeper

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> Any: ...


C = TypeVar("C", bound=_Closable)

# The HTTP path must answer within Graph's 3 s: one quick retry, no long back-off.
_FAST = {"retry_total": 1, "initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}
_FAST_TABLE = {"retry_total": 1, "retry_backoff_factor": 0}
_PATIENT = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
_PATIENT_TABLE = {"retry_total": 3, "retry_backoff_factor": 0.5}


class Lazy(Generic[T]):
    """A value built on first use and rebuilt when the event loop changes.

    Async SDK clients are bound to the loop they were created on.
    """

    def __init__(self, factory: Callable[[], Awaitable[T]]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> T:
        """The value, building it if this loop has none yet."""
        loop = asyncio.get_running_loop()
        if self._value is not None and self._loop is loop:
            return self._value
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._value = asyncio.Lock(), loop, None
        async with self._lock:
            if self._value is None:
                self._value = await self._factory()
                _keep_out_of_full_collections()
        return self._value


def _keep_out_of_full_collections() -> None:
    """Leave what the process has built to serve (SDK modules, clients) out of the GC's full collections.

    It lives as long as the process, and a full collection walks every tracked object with
    the process stopped: over the HTTP path's 67,000 that took 40 to 65 ms, twice per 2,000
    requests at 32 senders, and every request in flight waited (the ingest p99). Collected
    first, so no garbage is frozen with it.
    """
    gc.collect()
    gc.freeze()


class _Owned:
    """Clients built for a process, closed together (the host never needs to; tests do)."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    def own(self, client: C) -> C:
        """Register ``client`` for closing and hand it back."""
        self._stack.push_async_callback(client.close)
        return client

    async def close(self) -> None:
        """Close every registered client."""
        await self._stack.aclose()


@dataclass(frozen=True)
class Receivers:
    """The two HTTP endpoints' ingest objects."""

    notifications: Ingest
    lifecycle: Ingest
    resources: _Owned
    secrets: SecretBook

    async def close(self) -> None:
        """Let the secrets reads in flight finish, then close the storage clients."""
        await self.secrets.settle()
        await self.resources.close()


async def build_ingest(environ: Mapping[str, str]) -> Receivers:
    """The HTTP path needs only the storage connection, not the Graph settings."""
    from shared.claims import claims_for
    from shared.queues import MessageQueue
    from shared.storage import queue_client, storage_credential, table_client
    from shared.stores.subscriptions import SubscriptionStore

    connection = storage_connection(environ)
    telemetry.configure(environ)
    owned = _Owned()
    # One token credential (identity-based storage) for every client, closed after them.
    token = storage_credential(connection)
    if token is not None:
        owned.own(token)
    _refusal_flusher(environ, owned, connection, token)
    # Items too large for a queue message go to blobs (claims.py); the client is built on the first one.
    claims = claims_for(connection, token, **_FAST)
    queue = MessageQueue(
        owned.own(queue_client(connection, NOTIFICATIONS_QUEUE, token, **_FAST)),
        claims=owned.own(claims) if claims is not None else None,
    )
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **_FAST_TABLE)))
    # One point read per subscription id the first time it is named, then cached (see SecretBook).
    secrets = SecretBook(store.secret)
    tokens = _token_gate(environ, owned)
    return Receivers(Ingest(secrets, queue, tokens=tokens), Ingest(secrets, queue, tokens=tokens), owned, secrets)


def _refusal_flusher(
    environ: Mapping[str, str],
    owned: _Owned,
    connection: StorageConnection,
    token: AsyncTokenCredential | None,
    prune: bool = False,
    options: Mapping[str, Any] = _PATIENT_TABLE,
) -> RefusalFlusher:
    """Writes this process's refusal counts in the background, never on a request's path; a close flushes."""
    from shared.model.names import REFUSALS_TABLE
    from shared.settings import refusals_flush_seconds
    from shared.storage import table_client
    from shared.stores.refusals import RefusalFlusher, RefusalTable

    client = owned.own(table_client(connection, REFUSALS_TABLE, token, **options))
    return owned.own(RefusalFlusher(RefusalTable(client), refusals_flush_seconds(environ), prune=prune).start())


def _token_gate(environ: Mapping[str, str], owned: _Owned) -> TokenGate:
    """The validation-token checker; without GRAPH_CLIENT_ID or GRAPH_TENANT_ID it refuses every rich batch."""
    from shared.security.tokens import TokenGate
    from shared.settings import token_settings

    found = token_settings(environ)
    if found is None:
        return owned.own(TokenGate(None, None))
    return owned.own(TokenGate(found.client_id, found.tenant_id, found.authority, found.issuers, ca_file=found.ca_file))


@dataclass(frozen=True)
class Worker:
    """What the queue and timer triggers use."""

    settings: Settings
    processor: Processor
    renewer: Renewer
    resources: _Owned
    sweeper: Sweeper
    # The renewer of SharePoint's own list webhooks (SHAREPOINT_SUBSCRIPTIONS); build_worker always sets it.
    sharepoint: Renewer | None = None
    # Desired subscriptions added at run time (graphhooks desired), reconciled with GRAPH_SUBSCRIPTIONS.
    desired: DesiredStore | None = None

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
            await self.renewer.reconcile(desired, now)
            if self.sharepoint is not None:
                from shared.sharepoint.subscriptions import desired as sharepoint_desired

                await self.sharepoint.reconcile(sharepoint_desired(self.settings), now)
        finally:
            await self.sweeper.sweep(now)


async def build_worker(environ: Mapping[str, str]) -> Worker:
    """Read the settings and build the Graph, table and queue adapters."""
    from shared.graph import GraphGateway, build_client
    from shared.model.changes import SourceRegistry
    from shared.processor import Processor
    from shared.queues import MessageQueue
    from shared.renewer import Endpoints, Renewer
    from shared.sources.directory import DirectorySource
    from shared.sources.drives import DriveSource
    from shared.sources.lists import ListSource
    from shared.sources.teams import TeamsMessageSource
    from shared.storage import queue_client, storage_credential, table_client
    from shared.stores.cursors import CursorStore
    from shared.stores.items import ItemIndex
    from shared.stores.members import MemberStore
    from shared.stores.subscriptions import SubscriptionStore
    from shared.subscription_sets import SubscriptionSets
    from shared.sweeper import Sweeper
    from shared.synchronizer import Synchronizer

    settings = Settings.from_env(environ)
    telemetry.configure(environ)
    connection = settings.storage_connection
    owned = _Owned()
    client, credential = build_client(settings)
    owned.own(credential)
    graph = GraphGateway(client)
    token = storage_credential(connection)
    if token is not None:
        owned.own(token)
    # The worker's flusher also deletes old rows: one pruner per deployment suffices.
    _refusal_flusher(environ, owned, connection, token, prune=True)
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **_PATIENT_TABLE)))
    cursors = CursorStore(owned.own(table_client(connection, CURSORS_TABLE, token, **_PATIENT_TABLE)))
    index = ItemIndex(owned.own(table_client(connection, ITEMS_TABLE, token, **_PATIENT_TABLE)))
    members = MemberStore(owned.own(table_client(connection, MEMBERS_TABLE, token, **_PATIENT_TABLE)))
    for table in (store, cursors, index, members):
        await table.setup()
    from shared.claims import claims_for

    # The queue trigger redeems the claims the HTTP path queued for items over 48 KiB (claims.py).
    claims = claims_for(connection, token, **_PATIENT)
    notifications = MessageQueue(
        owned.own(queue_client(connection, settings.notifications_queue, token, **_PATIENT)),
        claims=owned.own(claims) if claims is not None else None,
    )
    poison = MessageQueue(
        owned.own(queue_client(connection, f"{settings.notifications_queue}-poison", token, **_PATIENT))
    )
    changes = MessageQueue(owned.own(_changes_client(settings, token, owned, **_PATIENT)))
    from shared.model.names import TAPS_TABLE
    from shared.outlet import EventOutlet
    from shared.sinks.config import sink_queues
    from shared.stores.taps import TapFeed, TapStore

    # Taps (graphhooks events tail) get a best-effort copy; plain clients: a tap queue is never re-created.
    taps = owned.own(
        TapFeed(
            TapStore(owned.own(table_client(connection, TAPS_TABLE, token, **_PATIENT_TABLE))),
            lambda name: queue_client(connection, name, token, **_FAST),
        )
    )
    # Every event reaches graph-changes first, then each sink's own queue (SINKS).
    outlet = EventOutlet(
        changes,
        [MessageQueue(owned.own(queue_client(connection, q, token, **_PATIENT))) for q in sink_queues(environ)],
        taps=taps,
    )
    from shared.sharepoint.client import build_sharepoint_client
    from shared.sharepoint.subscriptions import StoreView, sharepoint_renewer
    from shared.sources.sharepoint import SharePointListSource

    # SharePoint's own list webhooks: their REST API (certificate or managed identity), one more source.
    sharepoint_client = owned.own(await build_sharepoint_client(settings))
    from shared.model.names import SOURCE_STATE_TABLE
    from shared.sources.outlook import outlook_sources
    from shared.stores.source_state import SourceStateStore

    # What sources keep besides their link (the all-folder mail walk's per-folder deltaLinks),
    # committed by the synchronizer with each page.
    source_state = SourceStateStore(owned.own(table_client(connection, SOURCE_STATE_TABLE, token, **_PATIENT_TABLE)))
    await source_state.setup()
    sources = SourceRegistry(
        [
            SharePointListSource(sharepoint_client),
            DriveSource(graph),
            ListSource(graph),
            DirectorySource(graph, "users"),
            DirectorySource(graph, "groups"),
            *outlook_sources(graph, settings.calendar_window_days_past, settings.calendar_window_days_ahead),
            TeamsMessageSource(),
        ]
    )
    synchronizer = Synchronizer(cursors, index, sources, outlet, notifications, source_state)
    certificates = await _certificate_book(settings)
    renewer = Renewer(
        graph,
        # Graph's renewer sees only Graph's records; SharePoint's renewer has the rest.
        StoreView(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **_PATIENT_TABLE)), sharepoint=False),
        synchronizer,
        notifications,
        Endpoints(settings.notification_url, settings.lifecycle_notification_url),
        full_initial_sync=settings.initial_sync == "full",
        sets=SubscriptionSets(graph, members),
        encryption_for=_encryption_for(settings, certificates),
    )
    processor = Processor(
        store,
        synchronizer,
        renewer,
        notifications,
        poison,
        resource_data=_resource_data_reader(certificates, settings),
    )
    sweeper = Sweeper(store, cursors, notifications, settings.sweep_after)
    sharepoint = sharepoint_renewer(
        settings,
        lambda: owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **_PATIENT_TABLE)),
        synchronizer,
        notifications,
        sharepoint_client,
    )
    from shared.model.names import DESIRED_TABLE
    from shared.stores.desired import DesiredStore

    desired = DesiredStore(owned.own(table_client(connection, DESIRED_TABLE, token, **_PATIENT_TABLE)))
    return Worker(settings, processor, renewer, owned, sweeper, sharepoint=sharepoint, desired=desired)


def _changes_client(
    settings: Settings, app_token: AsyncTokenCredential | None, owned: _Owned, **options: Any
) -> QueueClient:
    """graph-changes, in CHANGES_STORAGE's account if set (with its own credential), else the app's."""
    from shared.storage import queue_client, storage_credential

    connection, token = settings.storage_connection, app_token
    if settings.changes_connection is not None:
        connection, token = settings.changes_connection, storage_credential(settings.changes_connection)
        if token is not None:
            owned.own(token)
    return queue_client(connection, settings.changes_queue, token, **options)


async def _certificate_book(settings: Settings) -> CertificateBook | None:
    """The notification certificates (current, and previous during a rotation), or None when none is set."""
    if settings.resource_data is None:
        return None
    from shared.security.certificates import CertificateBook, load_certificate

    def load(source: CertificateSource) -> Awaitable[NotificationCertificate]:
        return load_certificate(source.location, source.password, source.certificate_id, source.setting)

    previous = settings.resource_data.previous
    return CertificateBook(
        await load(settings.resource_data.current), await load(previous) if previous is not None else None
    )


def _encryption_for(
    settings: Settings, certificates: CertificateBook | None
) -> Callable[[str, bool], tuple[str, str] | None]:
    """(resource, asked) -> (public certificate, id) for the entries that ask for resource data.

    ``asked``: the renewer saw the desired entry ask (expanded sets included); the
    settings' own entries cover a renewal before any reconciliation in this process.
    """
    from shared.model.catalog import readable_kind

    wanted = {s.resource.strip("/") for s in settings.subscriptions if s.include_resource_data}

    def encryption(resource: str, asked: bool) -> tuple[str, str] | None:
        kind = readable_kind(resource)
        rich = asked or resource.strip("/") in wanted or (kind is not None and kind.resource_data_required)
        if not rich or certificates is None:
            return None
        return certificates.current.public_base64, certificates.current.certificate_id

    return encryption


def _resource_data_reader(certificates: CertificateBook | None, settings: Settings) -> ResourceDataReader | None:
    """Decrypts rich notifications; None without certificates."""
    if certificates is None:
        return None
    from shared.clock import utcnow
    from shared.security.resource_data import ResourceDataReader

    window = (settings.calendar_window_days_past, settings.calendar_window_days_ahead)
    return ResourceDataReader(certificates, utcnow, window)


@dataclass(frozen=True)
class Health:
    """GET /api/health's monitor and the clients it owns."""

    monitor: HealthMonitor
    resources: _Owned

    async def close(self) -> None:
        """Close the storage clients and the Graph credential."""
        await self.resources.close()


async def build_health(environ: Mapping[str, str]) -> Health:
    """The health checks' own clients: quick retries, since a probe waits for them."""
    from shared.graph import build_client, graph_scope
    from shared.health import HealthMonitor, HealthProbe
    from shared.storage import queue_client, storage_credential, table_client
    from shared.stores.subscriptions import SubscriptionStore

    settings = Settings.from_env(environ)
    telemetry.configure(environ)
    connection = settings.storage_connection
    owned = _Owned()
    _, credential = build_client(settings)
    owned.own(credential)
    token = storage_credential(connection)
    if token is not None:
        owned.own(token)
    # Quick retries: a probe reads the table through it.
    refusals = _refusal_flusher(environ, owned, connection, token, options=_FAST_TABLE)
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **_FAST_TABLE)))
    cursors = owned.own(table_client(connection, CURSORS_TABLE, token, **_FAST_TABLE))
    names = [settings.notifications_queue, f"{settings.notifications_queue}-poison"]
    queues = [owned.own(queue_client(connection, name, token, **_FAST)) for name in names]
    queues.append(owned.own(_changes_client(settings, token, owned, **_FAST)))
    scope = graph_scope(settings.graph_base_url)

    async def expiries() -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [record.expires_at for record in await store.list()]
        except ResourceNotFoundError:
            return []  # no table yet: nothing subscribed so far

    # The answering instance's own counts are flushed first; the others' are at most one flush interval old.
    probe = HealthProbe(lambda: credential.get_token(scope), expiries, cursors, queues, refusals=refusals.totals)
    monitor = HealthMonitor(
        probe.snapshot,
        settings.health_cache_seconds,
        on_snapshot=lambda snapshot: telemetry.observe_depths(snapshot.queue_depths),
    )
    return Health(monitor, owned)
