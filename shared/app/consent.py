"""The consent routes' objects: nothing in TENANT_MODE=single, else the flow and its storage clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import telemetry
from shared.app.clients import FAST, FAST_TABLE, refusal_flusher, storage_token
from shared.app.lazy import Owned
from shared.config.settings import Settings
from shared.config.tenants import tenant_mode
from shared.model.names import CONSENT_STATE_TABLE, NOTIFICATIONS_QUEUE, TENANTS_TABLE
from shared.model.tenant import SINGLE

if TYPE_CHECKING:
    from shared.tenants.consent import ConsentFlow


@dataclass(frozen=True)
class Consent:
    """The consent flow, or None when the deployment serves one tenant (both routes answer 404)."""

    flow: ConsentFlow | None
    resources: Owned

    async def close(self) -> None:
        """Close the storage clients."""
        await self.resources.close()


async def build_consent(environ: Mapping[str, str]) -> Consent:
    """In multi mode, the flow with its own quick-retry clients (an admin's browser waits for them)."""
    owned = Owned()
    if tenant_mode(environ) == SINGLE:
        return Consent(None, owned)
    from shared.graph import graph_scope
    from shared.queues.message_queue import MessageQueue
    from shared.stores.clients import queue_client, table_client
    from shared.stores.tenants import TenantStore
    from shared.tenants.consent import ConsentFlow, ConsentRequest
    from shared.tenants.state_store import ConsentStateStore

    settings = Settings.from_env(environ)
    telemetry.configure(environ)
    connection = settings.storage_connection
    token = storage_token(connection, owned)
    refusal_flusher(environ, owned, connection, token)
    request = ConsentRequest(
        authority_host=settings.authority_host or "",
        client_id=settings.client_id,
        scope=graph_scope(settings.graph_base_url),
        redirect_url=settings.consent_redirect_url,
    )
    tenants = TenantStore(owned.own(table_client(connection, TENANTS_TABLE, token, **FAST_TABLE)))
    states = ConsentStateStore(owned.own(table_client(connection, CONSENT_STATE_TABLE, token, **FAST_TABLE)))
    queue = MessageQueue(owned.own(queue_client(connection, NOTIFICATIONS_QUEUE, token, **FAST)))
    return Consent(ConsentFlow(request, tenants, states, queue), owned)
