"""GRAPH_SUBSCRIPTIONS and SHAREPOINT_SUBSCRIPTIONS: what to watch, checked against the catalog."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from shared.config.environment import check_url, optional
from shared.config.event_grid import check_topic_name, partner_topic
from shared.errors import InvalidSettingError, InvalidTenantError
from shared.model.catalog import READABLE, query_problem, readable_kind, split_resource
from shared.model.event_grid import DELIVERIES, WEBHOOK
from shared.model.hosts import is_loopback
from shared.model.resources import MEMBER_PLACEHOLDER, DesiredSubscription
from shared.model.sharepoint import SharePointList
from shared.model.tenant import canonical_tenant_id


def parse_desired(
    text: str, multi: bool = False, environ: Mapping[str, str] | None = None
) -> tuple[DesiredSubscription, ...]:
    """Parse GRAPH_SUBSCRIPTIONS: a JSON list of {"resource": ..., "changeType": ...}.

    In a multi-tenant deployment (``multi``) an entry may name ``"tenants": [...]``, the tenant
    ids it applies to; without it, it applies to every tenant. An entry with
    ``"delivery": "eventGrid"`` is delivered to the partner topic EVENT_GRID_* name (read from
    ``environ``), or to the one its ``"partnerTopic"`` names in the same resource group.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"not JSON ({exc.msg})") from exc
    if not isinstance(raw, list):
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", "must be a JSON list")
    desired: dict[str, DesiredSubscription] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} is not an object")
        resource = entry.get("resource")
        change_type = entry.get("changeType", "updated")
        if not isinstance(resource, str) or not resource.strip("/ "):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} has no resource")
        if not isinstance(change_type, str) or not change_type:
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} has no changeType")
        include = entry.get("includeResourceData", False)
        if not isinstance(include, bool):
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS", f"entry {index}: includeResourceData must be true or false"
            )
        group = entry.get("forEachMemberOf")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: forEachMemberOf must be a group id")
        path, query = split_resource(resource)
        if (group is not None) != (MEMBER_PLACEHOLDER in path):
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS",
                f"entry {index} ({resource!r}): forEachMemberOf and a {MEMBER_PLACEHOLDER} placeholder go together",
            )
        tenants = _tenants(index, entry.get("tenants"), multi)
        delivery = _delivery(index, entry, multi, environ or {})
        item = DesiredSubscription(
            path, change_type.replace(" ", ""), include, group, query, tenants=tenants, delivery=delivery
        )
        _check_readable(index, item)
        desired[item.key] = item
    return tuple(desired.values())


def _delivery(index: int, entry: Mapping[str, object], multi: bool, environ: Mapping[str, str]) -> str:
    """'' for the app's webhooks, or the ``EventGrid:`` URL of the entry's partner topic."""
    delivery = entry.get("delivery", WEBHOOK)
    topic = entry.get("partnerTopic")
    if delivery not in DELIVERIES:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: delivery must be {' or '.join(DELIVERIES)}")
    if delivery == WEBHOOK:
        if topic is not None:
            raise InvalidSettingError(
                "GRAPH_SUBSCRIPTIONS", f"entry {index}: partnerTopic goes with delivery eventGrid"
            )
        return ""
    if multi:
        # A partner topic lives in the deployment's own Azure subscription, authorized in its own tenant.
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index}: delivery eventGrid is not available with TENANT_MODE=multi"
        )
    if topic is not None and not isinstance(topic, str):
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: partnerTopic must be a topic name")
    name = check_topic_name("GRAPH_SUBSCRIPTIONS", topic, f"entry {index}: ") if topic is not None else None
    return partner_topic(environ, name).url


def _tenants(index: int, raw: object, multi: bool) -> frozenset[str]:
    """An entry's ``tenants`` filter, each id canonical; refused outside TENANT_MODE=multi."""
    if raw is None:
        return frozenset()
    if not multi:
        problem = f"entry {index}: 'tenants' applies only with TENANT_MODE=multi"
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", problem)
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: 'tenants' must be a list of tenant ids")
    try:
        return frozenset(canonical_tenant_id(t) for t in raw)
    except InvalidTenantError as exc:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index}: {exc}") from None


def _check_readable(index: int, item: DesiredSubscription) -> None:
    """Reject, naming the entry, a resource no change source reads or a changeType Graph refuses on it."""
    # A set's members are checked as one of them: the placeholder stands for a user id.
    kind = readable_kind(item.resource.replace(MEMBER_PLACEHOLDER, "member"))
    if kind is None:
        kinds = ", ".join(k.name for k in READABLE)
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): no change source reads it (readable: {kinds})"
        )
    if not kind.change_types:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): a {kind.name} is not a Graph resource"
        )
    refused = [t for t in item.change_type.split(",") if t not in kind.change_types]
    if refused:
        allowed = ", ".join(sorted(kind.change_types))
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS",
            f"entry {index} ({item.resource!r}): changeType {','.join(refused)!r} is refused for a {kind.name}"
            f" (allowed: {allowed})",
        )
    if kind.resource_data_required and not item.include_resource_data:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS",
            f"entry {index} ({item.resource!r}): Graph requires includeResourceData for {kind.name} (app-only)",
        )
    if item.include_resource_data and not kind.resource_data:
        raise InvalidSettingError(
            "GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.resource!r}): Graph sends no resource data for a {kind.name}"
        )
    problem = query_problem(kind, item.query, item.include_resource_data)
    if problem is not None:
        raise InvalidSettingError("GRAPH_SUBSCRIPTIONS", f"entry {index} ({item.graph_resource!r}): {problem}")


_SETTING = "SHAREPOINT_SUBSCRIPTIONS"


def check_site(site: str) -> str | None:
    """Why ``site`` cannot be a site URL, or None: https, or http only on loopback (the simulator)."""
    parts = urlsplit(site)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an absolute URL"
    if parts.query or parts.fragment:
        return "must have no query or fragment"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "must be https (plain http only on loopback)"
    return None


def parse_sharepoint(text: str) -> tuple[SharePointList, ...]:
    """Parse SHAREPOINT_SUBSCRIPTIONS: a JSON list of {"site": ..., "list": ...}, naming a bad entry."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSettingError(_SETTING, f"not JSON ({exc.msg})") from exc
    if not isinstance(raw, list):
        raise InvalidSettingError(_SETTING, "must be a JSON list")
    found: dict[str, SharePointList] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidSettingError(_SETTING, f"entry {index} is not an object")
        site, list_id = entry.get("site"), entry.get("list")
        if not isinstance(site, str) or not site.strip():
            raise InvalidSettingError(_SETTING, f"entry {index} has no site")
        problem = check_site(site.strip())
        if problem:
            raise InvalidSettingError(_SETTING, f"entry {index}: site {site!r} {problem}")
        try:
            guid = str(uuid.UUID(str(list_id)))
        except ValueError:
            raise InvalidSettingError(_SETTING, f"entry {index}: list {list_id!r} is not a list id (GUID)") from None
        item = SharePointList(site.strip().rstrip("/"), guid)
        found[item.resource] = item
    return tuple(found.values())


def notification_url_for(notification_url: str) -> str:
    """NOTIFICATION_URL with its path's last segment replaced by ``sharepoint``, its query kept."""
    parts = urlsplit(notification_url)
    head, _, _ = parts.path.rstrip("/").rpartition("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{head}/sharepoint", parts.query, ""))


def sharepoint_notification_url(environ: Mapping[str, str], notification_url: str) -> str:
    """SHAREPOINT_NOTIFICATION_URL; by default NOTIFICATION_URL with its last path segment ``sharepoint``."""
    url = optional(environ, "SHAREPOINT_NOTIFICATION_URL") or notification_url_for(notification_url)
    check_url("SHAREPOINT_NOTIFICATION_URL", url)
    return url
