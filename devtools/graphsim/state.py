"""One tenant's world in the simulator, shared by the Graph and control handlers.

A state owns its tenant's models (models/) and subscriptions, and hears of their changes:
each change becomes a notification for every subscription on the changed resource, queued
for delivery with the tenant's ``tenantId``. The route modules (routes/) read and change the
models through it; the models never see it.

The home tenant's state (``SimConfig.tenant_id``) is made at start-up and holds what all
tenants share: the clock, the token issuer, delivery, rich-notification signing and the
tenant registry (tenants.py), which makes other tenants' states lazily, sharing those
parts. A state's models are made on first use too, so a tenant costs little until it holds
data.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import aiohttp
from aiohttp import web

from .auth import TokenIssuer
from .clock import SimClock, graph_time
from .config import SimConfig
from .delivery import Deliverer, DeliveryStats
from .delta_tokens import CursorCache
from .eventgrid import is_eventgrid
from .eventgrid_events import SUBJECT_KEY
from .faults import FaultInjector, WriteThrottle
from .models.directory import Directory
from .models.drive_store import DriveStore
from .models.drives import Drive
from .models.lists import ListStore
from .models.outlook import OutlookStore
from .models.sharepoint import SharePointSim
from .models.subscriptions import RESOURCE_KEY, Subscription, SubscriptionStore, resource_path
from .models.teams import CHAT_MESSAGE_TYPE, Conversation, TeamsStore
from .rich import RichDelivery, encrypt_content
from .tenants import Tenants


@dataclass(eq=False)
class SimState:
    """One tenant's in-memory world; ``home`` is None for the home tenant's, which the others share parts of."""

    config: SimConfig
    issuer: TokenIssuer
    clock: SimClock = field(default_factory=SimClock)
    subs: SubscriptionStore = field(default_factory=SubscriptionStore)
    faults: FaultInjector = field(default_factory=FaultInjector)
    cursors: CursorCache = field(default_factory=CursorCache)
    graph_url: str = ""
    subscription_writes: int = 0
    graph_requests: int = 0
    auth_failures: int = 0
    tenant_id: str = ""  # "" until __post_init__: the home tenant's
    home: SimState | None = None
    rich: RichDelivery = field(init=False)
    deliverer: Deliverer = field(init=False)
    throttle: WriteThrottle = field(init=False)
    app_throttle: WriteThrottle | None = field(init=False)  # all tenants' writes together, when limited
    tenants: Tenants[SimState] = field(init=False)
    http: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.throttle = WriteThrottle(self.config.write_limit, self.config.write_window_seconds)
        if self.home is not None:
            # Another tenant: Graph's delivery, signing and clock are one for all tenants.
            self.tenant_id = self.tenant_id or self.config.tenant_id
            self.clock, self.deliverer, self.rich = self.home.clock, self.home.deliverer, self.home.rich
            self.app_throttle = self.home.app_throttle
            self.tenants, self.graph_url = self.home.tenants, self.home.graph_url
            return
        self.tenant_id = self.config.tenant_id
        limit = self.config.app_write_limit
        self.app_throttle = WriteThrottle(limit, self.config.write_window_seconds) if limit > 0 else None
        self.deliverer = Deliverer(self.config)
        self.deliverer.eventgrid.now = self.clock.now
        # Rich notifications: validation tokens on delivered batches, one per tenant (and app) in a batch.
        self.rich = RichDelivery(self.issuer.validation, self.config.tenant_id)
        self.deliverer.shape = self.rich.shape
        self.tenants = Tenants(self, self.for_tenant)

    def for_tenant(self, tenant_id: str) -> SimState:
        """A new, empty state for another tenant, sharing this (home) state's clock, delivery and signing."""
        return SimState(config=self.config, issuer=self.issuer, tenant_id=tenant_id, home=self)

    @cached_property
    def drives(self) -> DriveStore:
        """The tenant's OneDrive drives."""
        drives = DriveStore(self.clock)
        drives.listeners.append(self.on_drive_change)
        drives.delta_lag_seconds = self.config.delta_lag_seconds
        return drives

    @cached_property
    def lists(self) -> ListStore:
        """The tenant's SharePoint lists, as Graph shows them."""
        lists = ListStore(self.clock)
        lists.listeners.append(self.on_resource_change)
        return lists

    @cached_property
    def directory(self) -> Directory:
        """The tenant's users and groups."""
        directory = Directory(self.clock.now)
        directory.listeners.append(self.on_resource_change)
        return directory

    @cached_property
    def outlook(self) -> OutlookStore:
        """The tenant's mailboxes."""
        outlook = OutlookStore(self.clock.now)
        outlook.listeners.append(self.on_resource_change)
        return outlook

    @cached_property
    def teams(self) -> TeamsStore:
        """The tenant's teams and chats (their messages' notifications: models/teams.py)."""
        teams = TeamsStore(self.clock.now)
        teams.listeners.append(self.on_message_change)
        return teams

    @cached_property
    def sharepoint(self) -> SharePointSim:
        """SharePoint's own REST API, which delivers its list webhooks itself (models/sharepoint.py)."""
        sharepoint = SharePointSim(self.config, self.clock.now, self.session)
        sharepoint.tenant_id = self.tenant_id
        return sharepoint

    def session(self) -> aiohttp.ClientSession:
        """HTTP client for validation handshakes (one for all tenants)."""
        if self.home is not None:
            return self.home.session()
        if self.http is None or self.http.closed:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False))
        return self.http

    def notification(self, sub: Subscription) -> dict[str, Any]:
        """A driveItem change notification: no resource data, as OneDrive sends."""
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time(sub.expiration),
            "changeType": "updated",
            "resource": sub.resource,
            "clientState": sub.client_state,
            "tenantId": self.tenant_id,
        }

    def on_drive_change(self, drive: Drive, changes: int) -> None:
        """Queue one notification per changed item for each subscription on the drive."""
        for sub in self.subs.for_drive(drive.id, self.clock.now()):
            # Through Event Grid the drive's root item is the event's subject (one-drive-events.md).
            extra = {SUBJECT_KEY: f"driveItem/{drive.root_id}"} if is_eventgrid(sub.notification_url) else {}
            self.deliver(sub, sub.notification_url, [self.notification(sub) | extra for _ in range(changes)])

    def deliver(self, sub: Subscription, url: str, items: list[dict[str, Any]]) -> None:
        """Queue ``sub``'s notifications for ``url``: a webhook, or an Event Grid partner topic."""
        self.deliverer.enqueue(url, items, self.tenant_id, sub.application_id)

    def on_resource_change(self, resource: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Notify the subscriptions on ``resource`` (lists, users, groups, mail) of the change types they asked for."""
        self.notify_subscribers(frozenset({resource}), changes)

    def on_message_change(self, where: Conversation, change_type: str, message: dict[str, Any]) -> None:
        """Notify the subscriptions that hear of a channel's or chat's messages, one notification each."""
        path = where.path(message["id"])
        extra = {
            "resource": path,
            "resourceData": {"id": message["id"], "@odata.type": CHAT_MESSAGE_TYPE, "@odata.id": path},
            RESOURCE_KEY: {"@odata.context": f"{self.graph_url}/$metadata#{path}/$entity", **message},
        }
        self.notify_subscribers(where.subscribed(), [(change_type, extra)])

    def notify_subscribers(self, resources: frozenset[str], changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue, for each subscription on one of ``resources`` (lower case), the changes of the types it asked for."""
        self.subs.prune(self.clock.now())
        for sub in list(self.subs.subs.values()):
            if resource_path(sub.resource).strip("/").lower() not in resources:
                continue
            wanted = {c.strip() for c in sub.change_type.split(",")}
            base = self.notification(sub)
            items = [self._rich(sub, base | {"changeType": kind, **extra}) for kind, extra in changes if kind in wanted]
            if items:
                self.deliver(sub, sub.notification_url, items)

    def _rich(self, sub: Subscription, item: dict[str, Any]) -> dict[str, Any]:
        """A notification as the subscription gets it: with its item encrypted when it asked for resource data.

        As Graph documents for Outlook and Teams resources (change-notifications-with-resource-data.md),
        a deletion carries no ``encryptedContent``: ``resourceData`` names the item.
        """
        resource = item.pop(RESOURCE_KEY, None)
        if not (sub.include_resource_data and isinstance(resource, dict)):
            return item
        self.rich.audiences[sub.id] = sub.application_id
        if item["changeType"] != "deleted" and sub.encryption_certificate and sub.encryption_certificate_id:
            item["encryptedContent"] = encrypt_content(
                resource, sub.encryption_certificate, sub.encryption_certificate_id
            )
        return item

    def lifecycle(self, sub: Subscription, event: str) -> bool:
        """Send a lifecycle notification; ``subscriptionRemoved`` also deletes the sub."""
        if event == "subscriptionRemoved":
            self.subs.subs.pop(sub.id, None)
        if not sub.lifecycle_url:
            return False
        self.deliver(
            sub,
            sub.lifecycle_url,
            [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": graph_time(sub.expiration),
                    "tenantId": self.tenant_id,
                    "clientState": sub.client_state,
                    "lifecycleEvent": event,
                }
            ],
        )
        return True

    def reset(self) -> None:
        """Forget drives, subscriptions, faults (delivery drop, delay and delta lag too), queues, counters,
        and every tenant but the home tenant (whose SharePoint stays, as it always has)."""
        for gone in self.tenants.reset():
            if "sharepoint" in gone.__dict__:
                asyncio.get_running_loop().create_task(gone.sharepoint.close())
        self.drives.drives.clear()
        self.lists.lists.clear()
        self.outlook.mailboxes.clear()
        self.__dict__.pop("directory", None)  # made afresh on first use
        self.drives.delta_lag_seconds = self.config.delta_lag_seconds
        self.teams.clear()
        self.subs.subs.clear()
        self.faults.clear()
        self.cursors.clear()
        self.deliverer.clear()
        self.throttle.reset()
        if self.app_throttle is not None:
            self.app_throttle.reset()
        self.rich.clear()
        self.clock.offset = type(self.clock.offset)()
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.deliverer.stats = DeliveryStats()
        self.subscription_writes = self.graph_requests = self.auth_failures = 0
        self.faults.injected = 0
        self.throttle.throttled = 0
        if "drives" in self.__dict__:
            for d in self.drives.drives.values():
                d.delta_runs = d.delta_requests = 0


STATE = web.AppKey("graphsim_state", SimState)
