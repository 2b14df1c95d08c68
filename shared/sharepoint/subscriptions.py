"""SharePoint list subscriptions behind the interface the Reconciler drives, and the table view it sees.

The Reconciler (create, renew, re-create, delete, strays) and its pure plan work
unchanged on SharePoint's subscriptions: this gateway speaks SharePoint's
subscription API with the Graph gateway's method names. Differences, by design:
- SharePoint names a subscription by list and id, so renewals and deletions
  look the list up in the table (or in the last listing);
- SharePoint has no lifecycle events; ``reauthorize`` renews;
- a subscription SharePoint already has for our URL but the table does not know
  is not adopted: its clientState is unknown, so notifications for it could
  never be checked. The plan deletes it as a stray and creates a new one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import parse_time
from shared.errors import SubscriptionNotFoundError
from shared.model.sharepoint import SharePointList, is_list_resource, list_of
from shared.model.subscription import RemoteSubscription, SubscriptionRecord, SubscriptionRequest
from shared.sharepoint.client import SharePointClient
from shared.stores.subscriptions import SubscriptionStore

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient


log = logging.getLogger(__name__)


class StoreView(SubscriptionStore):
    """The subscriptions table as one reconciler sees it: ``list`` holds only the records it owns.

    Graph's reconciler and SharePoint's share the table (one HTTP path, one
    processor); each must neither renew nor delete the other's records.
    """

    def __init__(self, client: TableClient, sharepoint: bool, tenant: str | None = None) -> None:
        super().__init__(client, tenant=tenant)
        self._sharepoint = sharepoint

    async def list(self) -> list[SubscriptionRecord]:
        """The stored records of this view's kind."""
        return [r for r in await super().list() if is_list_resource(r.resource) == self._sharepoint]


class SharePointSubscriptions:
    """SharePoint's subscription API with the Graph gateway's method names, for the Reconciler."""

    def __init__(self, client: SharePointClient, store: SubscriptionStore, lists: Sequence[SharePointList]) -> None:
        self._client = client
        self._store = store
        self._lists = tuple(lists)
        # Subscription id -> list, learnt from creations and listings (strays are in no record).
        self._known: dict[str, SharePointList] = {}

    async def create_subscription(self, request: SubscriptionRequest) -> RemoteSubscription:
        """Create a subscription on the list the request's resource names; SharePoint validates the URL first.

        The lifecycle URL and encryption have no SharePoint counterpart and are ignored.
        """
        target = _target(request.resource)
        created = await self._client.create_subscription(
            target, request.notification_url, request.client_state, request.expires_at
        )
        remote = _remote(created, target)
        self._known[remote.id] = target
        return remote

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime, encryption: tuple[str, str] | None = None
    ) -> datetime:
        """PATCH the expiry; SharePoint answers 204, so the expiry asked for is the one granted.

        ``encryption`` has no SharePoint counterpart: its subscriptions carry no resource data.
        """
        target = await self._list_of(subscription_id)
        if target is None:
            raise SubscriptionNotFoundError(f"no list is known for subscription {subscription_id}", 404)
        await self._client.renew_subscription(target, subscription_id, expires_at)
        return expires_at

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        """SharePoint sends no reauthorizationRequired; nothing needs doing."""

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; one SharePoint (or this app) no longer knows counts as deleted."""
        target = await self._list_of(subscription_id)
        if target is None:
            log.info("subscription %s names no known list: nothing to delete", subscription_id)
            return
        try:
            await self._client.delete_subscription(target, subscription_id)
        except SubscriptionNotFoundError:
            log.info("subscription %s was already gone", subscription_id)
        self._known.pop(subscription_id, None)

    async def list_subscriptions(
        self, pace: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    ) -> list[RemoteSubscription]:
        """The subscriptions of every desired list (every app's: the plan keeps those for our URL)."""
        found: list[RemoteSubscription] = []
        for target in self._lists:
            async with pace() if pace is not None else contextlib.nullcontext():
                rows = await self._client.subscriptions(target)
            for row in rows:
                remote = _remote(row, target)
                self._known[remote.id] = target
                found.append(remote)
        return found

    async def _list_of(self, subscription_id: str) -> SharePointList | None:
        if subscription_id in self._known:
            return self._known[subscription_id]
        record = await self._store.find(subscription_id)
        return list_of(record.resource) if record is not None else None


def _target(resource: str) -> SharePointList:
    target = list_of(resource)
    if target is None:
        raise SubscriptionNotFoundError(f"not a SharePoint list: {resource!r}", 404)
    return target


def _remote(row: dict[str, Any], target: SharePointList) -> RemoteSubscription:
    """SharePoint's subscription, named by the list's URL (SharePoint's ``resource`` is the bare list id)."""
    expires = row.get("expirationDateTime")
    return RemoteSubscription(
        id=str(row["id"]),
        resource=target.resource,
        change_type="updated",
        notification_url=str(row.get("notificationUrl") or ""),
        expires_at=parse_time(expires) if isinstance(expires, str) else None,
    )
