"""The HTTP path's objects: it needs only the storage connection, not the Graph settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared import telemetry
from shared.app.clients import FAST, FAST_TABLE, refusal_flusher, storage_token, token_gate
from shared.app.lazy import Owned
from shared.config.storage import storage_connection
from shared.ingest.event_grid import EventGridIngest
from shared.ingest.receiver import Ingest
from shared.ingest.secrets import SecretBook
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE


@dataclass(frozen=True)
class Receivers:
    """The two HTTP endpoints' ingest objects, and the Event Grid trigger's."""

    notifications: Ingest
    lifecycle: Ingest
    resources: Owned
    secrets: SecretBook
    event_grid: EventGridIngest

    async def close(self) -> None:
        """Let the secrets reads in flight finish, then close the storage clients."""
        await self.secrets.settle()
        await self.resources.close()


async def build_ingest(environ: Mapping[str, str]) -> Receivers:
    """The HTTP path needs only the storage connection, not the Graph settings."""
    from shared.queues.claims import claims_for
    from shared.queues.message_queue import MessageQueue
    from shared.stores.clients import queue_client, table_client
    from shared.stores.subscriptions import SubscriptionStore

    connection = storage_connection(environ)
    telemetry.configure(environ)
    owned = Owned()
    # One token credential (identity-based storage) for every client, closed after them.
    token = storage_token(connection, owned)
    refusal_flusher(environ, owned, connection, token)
    # Items too large for a queue message go to blobs (queues/claims.py); the client is built on the first one.
    claims = claims_for(connection, token, **FAST)
    queue = MessageQueue(
        owned.own(queue_client(connection, NOTIFICATIONS_QUEUE, token, **FAST)),
        claims=owned.own(claims) if claims is not None else None,
    )
    store = SubscriptionStore(owned.own(table_client(connection, SUBSCRIPTIONS_TABLE, token, **FAST_TABLE)))
    # One point read per subscription id the first time it is named, then cached (see SecretBook).
    secrets = SecretBook(store.subscription_secret)
    tokens = token_gate(environ, owned)
    ingest = Ingest(secrets, queue, tokens=tokens)
    return Receivers(ingest, Ingest(secrets, queue, tokens=tokens), owned, secrets, EventGridIngest(ingest))
