"""What the app watches: resources, their keys, and the desired subscriptions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from shared.model.tenant import scoped_key

# Stands for each member's user id in a subscription set's resource.
MEMBER_PLACEHOLDER = "{member}"


def resource_key(resource: str) -> str:
    """A resource as a Table storage key (which forbids '/', '\\', '#' and '?').

    Cursors and item rows are keyed by it, so it never changes for a resource: a subscription's
    query (``?model=B``) is kept apart (DesiredSubscription.query) and never reaches it.
    """
    safe = resource.strip().strip("/").replace("/", ":").replace("\\", ":")
    return safe.replace("#", "%23").replace("?", "%3F")


def cursor_key(resource: str, tenant: str = "") -> str:
    """The key a resource's cursor, item index and source state share: its resource key, within its tenant."""
    return scoped_key(tenant, resource_key(resource))


@dataclass(frozen=True)
class DesiredSubscription:
    """One entry of GRAPH_SUBSCRIPTIONS: a resource to watch and the change types.

    ``include_resource_data`` asks Graph for rich notifications (encrypted resource
    data); ``for_each_member_of`` names a group whose members the entry expands over,
    its resource holding a ``{member}`` placeholder. ``query`` is the OData query Graph
    documents for the resource (``model=B``, ``$select=subject``): it reaches Graph in the
    subscription's resource unchanged, while ``resource``, the path alone, keys the
    subscription, its cursor and its change source.

    In a multi-tenant deployment an entry of GRAPH_SUBSCRIPTIONS is a template: it applies
    to every served tenant, or only to those in ``tenants``. ``tenant`` names the tenant an
    entry is for (a template applied to it, or an entry added for it alone); it scopes the key.
    """

    resource: str
    change_type: str
    include_resource_data: bool = False
    for_each_member_of: str | None = None
    query: str = ""
    tenant: str = ""
    tenants: frozenset[str] = frozenset()
    # Where Graph delivers it: '' for this app's webhooks, else an ``EventGrid:`` partner topic URL
    # (model/event_grid.py). Like the query, it has no part in the key: changing it re-creates.
    delivery: str = ""

    @property
    def key(self) -> str:
        """A stable key usable as a Table storage RowKey (no '/', '\\', '#' or '?'); the query has no part in it."""
        return scoped_key(self.tenant, f"{resource_key(self.resource)}|{self.change_type}")

    @property
    def graph_resource(self) -> str:
        """The resource as Graph is given it: the path, then the query, unchanged."""
        return f"{self.resource}?{self.query}" if self.query else self.resource


def for_tenant(desired: Iterable[DesiredSubscription], tenant: str) -> tuple[DesiredSubscription, ...]:
    """What ``tenant`` is to have: the templates that apply to it, made its own, and its own entries."""
    wanted: dict[str, DesiredSubscription] = {}
    for entry in desired:
        if entry.tenant == tenant:
            wanted[entry.key] = entry
        elif not entry.tenant and (not entry.tenants or tenant in entry.tenants):
            own = replace(entry, tenant=tenant, tenants=frozenset())
            wanted.setdefault(own.key, own)
    return tuple(wanted.values())
