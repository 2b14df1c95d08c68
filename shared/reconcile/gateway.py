"""The port the reconciler knows: a service that keeps subscriptions (Graph's, or SharePoint's own)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from shared.model.subscription import RemoteSubscription, SubscriptionRequest


class SubscriptionGateway(Protocol):
    """Create, renew, reauthorize, delete and list subscriptions (shared.graph.GraphGateway,
    shared.sharepoint.subscriptions.SharePointSubscriptions)."""

    async def create_subscription(self, request: SubscriptionRequest) -> RemoteSubscription: ...

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime, encryption: tuple[str, str] | None = None
    ) -> datetime: ...

    async def reauthorize_subscription(self, subscription_id: str) -> None: ...

    async def delete_subscription(self, subscription_id: str) -> None: ...

    async def list_subscriptions(
        self, pace: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    ) -> list[RemoteSubscription]: ...
