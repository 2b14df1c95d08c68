"""Per-tenant Graph clients, change sources and reconcilers of a multi-tenant deployment.

Every tenant's Graph calls carry a token from its own authority. One credential serves
them all (asked with ``tenant_id``) and one HTTP connection pool is shared, so what a
tenant costs is a handful of small objects, built on first use; at most ``capacity``
tenants' objects are kept, the least recently used going first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import UnsupportedResourceError
from shared.model.changes import SourceRegistry

if TYPE_CHECKING:
    import httpx

    from shared.graph import GraphGateway
    from shared.reconcile.reconciler import Reconciler

# Tenants whose objects are kept at once: more than a deployment's tenants, so budgets survive.
DEFAULT_CAPACITY = 4096
# A tenant's Retry-After longer than this is not waited out by the call: its pass is put off instead
# (shared/tenants/work.py), so a throttled tenant never holds a worker another tenant could use.
PATIENCE_SECONDS = 2.0


class TenantGraph:
    """One tenant's Graph gateway, its change sources, and its reconciler (built when first asked for)."""

    __slots__ = ("_reconciler", "_reconciler_factory", "gateway", "sources")

    def __init__(
        self, gateway: GraphGateway, sources: SourceRegistry, reconciler: Callable[[GraphGateway], Reconciler]
    ) -> None:
        self.gateway = gateway
        self.sources = sources
        self._reconciler_factory = reconciler
        self._reconciler: Reconciler | None = None

    @property
    def reconciler(self) -> Reconciler:
        """The tenant's reconciler, which keeps its write budget between ticks."""
        if self._reconciler is None:
            self._reconciler = self._reconciler_factory(self.gateway)
        return self._reconciler


class TenantGraphs(SourceRegistry):
    """Tenant id -> TenantGraph, built on first use; as a SourceRegistry, ``of(tenant)`` gives its sources."""

    def __init__(
        self,
        credential: Any,
        scope: str,
        base_url: str,
        sources: Callable[[GraphGateway], SourceRegistry],
        reconciler: Callable[[str, GraphGateway], Reconciler],
        capacity: int = DEFAULT_CAPACITY,
        fresh: Callable[[], Any] | None = None,
    ) -> None:
        # Builds a credential with an empty cache: a token asked for through it comes from the authority now.
        self._fresh = fresh
        super().__init__(())
        self._credential = credential
        self._scope = scope
        self._base_url = base_url
        self._build_sources = sources
        self._reconciler = reconciler
        self._capacity = capacity
        self._graphs: OrderedDict[str, TenantGraph] = OrderedDict()
        self._http: httpx.AsyncClient | None = None

    def of(self, tenant: str) -> SourceRegistry:
        """The change sources reading ``tenant``'s data."""
        return self.graph(tenant).sources

    def graph(self, tenant: str) -> TenantGraph:
        """``tenant``'s Graph objects; UnsupportedResourceError for a record of no tenant."""
        if not tenant:
            raise UnsupportedResourceError("a subscription of no tenant in a multi-tenant deployment")
        found = self._graphs.get(tenant)
        if found is None:
            found = self._build(tenant)
            self._graphs[tenant] = found
            if len(self._graphs) > self._capacity:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(tenant)
        return found

    async def token(self, tenant: str, fresh: bool = False) -> None:
        """Get (or reuse) ``tenant``'s Graph token; raise azure-identity's error when the tenant refuses it.

        ``fresh`` asks the authority itself, past the cache: a token issued before consent
        was revoked stays cached (and refused by Graph) until it expires.
        """
        if not fresh or self._fresh is None:
            await self._credential.get_token(self._scope, tenant_id=tenant)
            return
        credential = self._fresh()
        try:
            await credential.get_token(self._scope, tenant_id=tenant)
        finally:
            await credential.close()

    def _build(self, tenant: str) -> TenantGraph:
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient

        from shared.graph import GraphGateway

        provider = AzureIdentityAuthenticationProvider(
            self._credential, options={"tenant_id": tenant}, scopes=[self._scope]
        )
        adapter = GraphRequestAdapter(provider, client=self._shared_http())
        adapter.base_url = self._base_url
        gateway = GraphGateway(GraphServiceClient(request_adapter=adapter), patience=PATIENCE_SECONDS)
        return TenantGraph(gateway, self._build_sources(gateway), lambda g: self._reconciler(tenant, g))

    def _shared_http(self) -> httpx.AsyncClient:
        if self._http is None:
            from kiota_http.middleware.options import RetryHandlerOption
            from msgraph.graph_request_adapter import options
            from msgraph_core import GraphClientFactory

            # Retries are GraphGateway's, which knows a tenant's patience; the SDK's would wait out every Retry-After.
            no_retry = {RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0, should_retry=False)}
            self._http = GraphClientFactory.create_with_default_middleware(options=options | no_retry)
        return self._http

    async def close(self) -> None:
        """Close the shared connection pool and the credential."""
        if self._http is not None:
            await self._http.aclose()
        await self._credential.close()
