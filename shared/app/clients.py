"""The clients every entry point shares: retry profiles, the changes queue, refusal counts, token checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.app.lazy import Owned
from shared.config.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.queue.aio import QueueClient

    from shared.model.connection import StorageConnection
    from shared.security.tokens import TokenGate
    from shared.stores.refusals import RefusalFlusher

# The HTTP path must answer within Graph's 3 s: one quick retry, no long back-off.
FAST = {"retry_total": 1, "initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}
FAST_TABLE = {"retry_total": 1, "retry_backoff_factor": 0}
PATIENT = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
PATIENT_TABLE = {"retry_total": 3, "retry_backoff_factor": 0.5}


def storage_token(connection: StorageConnection, owned: Owned) -> AsyncTokenCredential | None:
    """The token credential an identity-based connection uses, closed with ``owned``; None for a connection string.

    One per entry point: every storage client of the process shares it.
    """
    from shared.stores.clients import storage_credential

    token = storage_credential(connection)
    return owned.own(token) if token is not None else None


def refusal_flusher(
    environ: Mapping[str, str],
    owned: Owned,
    connection: StorageConnection,
    token: AsyncTokenCredential | None,
    prune: bool = False,
    options: Mapping[str, Any] = PATIENT_TABLE,
) -> RefusalFlusher:
    """Writes this process's refusal counts in the background, never on a request's path; a close flushes."""
    from shared.config.settings import refusals_flush_seconds
    from shared.model.names import REFUSALS_TABLE
    from shared.stores.clients import table_client
    from shared.stores.refusals import RefusalFlusher, RefusalTable

    client = owned.own(table_client(connection, REFUSALS_TABLE, token, **options))
    return owned.own(RefusalFlusher(RefusalTable(client), refusals_flush_seconds(environ), prune=prune).start())


def token_gate(environ: Mapping[str, str], owned: Owned) -> TokenGate:
    """The validation-token checker; without GRAPH_CLIENT_ID or GRAPH_TENANT_ID it refuses every rich batch."""
    from shared.config.security import token_settings
    from shared.security.tokens import TokenGate

    found = token_settings(environ)
    if found is None:
        return owned.own(TokenGate(None, None))
    return owned.own(
        TokenGate(
            found.client_id, found.tenant_id, found.authority, found.issuers, ca_file=found.ca_file, multi=found.multi
        )
    )


def changes_client(
    settings: Settings, app_token: AsyncTokenCredential | None, owned: Owned, **options: Any
) -> QueueClient:
    """graph-changes, in CHANGES_STORAGE's account if set (with its own credential), else the app's."""
    from shared.stores.clients import queue_client

    connection, token = settings.storage_connection, app_token
    if settings.changes_connection is not None:
        connection, token = settings.changes_connection, storage_token(settings.changes_connection, owned)
    return queue_client(connection, settings.changes_queue, token, **options)
