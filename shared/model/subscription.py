"""A subscription this app created at Graph, and its statuses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from shared.model.resources import cursor_key
from shared.model.tenant import scope_of

ACTIVE = "active"
CREATING = "creating"
FAILED = "failed"


@dataclass(frozen=True)
class SubscriptionRequest:
    """What creating a subscription asks of Graph (or SharePoint).

    ``encryption`` (base64 DER public certificate, its id) asks for resource data;
    SharePoint has no lifecycle URL and no resource data, and ignores both.
    """

    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires_at: datetime
    encryption: tuple[str, str] | None = None


@dataclass(frozen=True)
class SubscriptionSecret:
    """What the HTTP path checks a notification against: its subscription's clientState and tenant."""

    client_state: str
    # '' in a single-tenant deployment: GRAPH_TENANT_ID is the only tenant.
    tenant: str = ""


@dataclass(frozen=True)
class RemoteSubscription:
    """A subscription as Graph reports it."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    expires_at: datetime | None


@dataclass(frozen=True)
class SubscriptionRecord:
    """One desired subscription and, once created, Graph's id and expiry for it.

    While a subscription is being re-created, the record keeps the old id and
    clientState (so notifications already queued for it still resolve) with
    status ``creating``; ``updated_at`` is then the time of the attempt.
    """

    key: str
    resource: str
    change_type: str
    client_state: str
    status: str
    updated_at: datetime
    subscription_id: str = ""
    expires_at: datetime | None = None
    # The OData query sent to Graph after the resource (``model=B``, ``$select=...``); the rest of
    # the app reads ``resource`` alone, so cursors and sources never see it.
    query: str = ""
    # The certificate Graph encrypts this subscription's resource data for (rich subscriptions).
    certificate_id: str = ""
    certificate_thumbprint: str = ""
    # '' for this app's webhooks, else the ``EventGrid:`` partner topic URL Graph delivers to.
    delivery: str = ""

    @property
    def graph_resource(self) -> str:
        """The subscription's ``resource`` as Graph is given it: the path, then the query, unchanged."""
        return f"{self.resource}?{self.query}" if self.query else self.resource

    @property
    def tenant(self) -> str:
        """The tenant the subscription is in: the scope of its key ('' in a single-tenant deployment)."""
        return scope_of(self.key)

    @property
    def cursor_key(self) -> str:
        """The key of its resource's cursor, item index and source state (within its tenant)."""
        return cursor_key(self.resource, self.tenant)

    def activated(
        self, subscription_id: str, expires_at: datetime, now: datetime, client_state: str | None = None
    ) -> SubscriptionRecord:
        """The record once Graph has created (or renewed) the subscription."""
        return replace(
            self,
            subscription_id=subscription_id,
            expires_at=expires_at,
            status=ACTIVE,
            updated_at=now,
            client_state=self.client_state if client_state is None else client_state,
        )
