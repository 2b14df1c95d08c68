"""The Microsoft Graph adapter: msgraph-sdk calls behind a small interface.

Only this module knows the SDK's request builders and error types; callers see
plain dicts and this package's errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from shared.backoff import retrying
from shared.clock import format_time, parse_time
from shared.errors import (
    GraphRequestError,
    NotFoundError,
    ResyncRequiredError,
    SubscriptionConflictError,
    TransientGraphError,
    subscription_call,
)
from shared.model.hosts import is_loopback
from shared.model.subscription import RemoteSubscription, SubscriptionRequest

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation
    from msgraph.graph_service_client import GraphServiceClient


log = logging.getLogger(__name__)
T = TypeVar("T")


def graph_scope(base_url: str) -> str:
    """The token scope for a Graph base URL (national clouds use their own host)."""
    host = urlsplit(base_url).hostname or "graph.microsoft.com"
    if is_loopback(host):
        host = "graph.microsoft.com"
    return f"https://{host}/.default"


def _convert(exc: Exception) -> Exception:
    from kiota_abstractions.api_error import APIError

    if not isinstance(exc, APIError):
        return exc
    status = exc.response_status_code or 0
    main = getattr(exc, "error", None)
    code = str(getattr(main, "code", "") or "")
    message = f"Graph answered {status} {code}".strip()
    headers = {k.lower(): v for k, v in (exc.response_headers or {}).items()}
    if status == 404:
        return NotFoundError(message, status, code)
    if status == 409:
        return SubscriptionConflictError(message, status, code)
    if status == 410:
        return ResyncRequiredError(message, headers.get("location"))
    if status == 429 or status >= 500:
        retry_after = headers.get("retry-after")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        return TransientGraphError(message, status, code, seconds)
    return GraphRequestError(message, status, code)


class GraphGateway:
    """The Graph calls this app makes, with errors translated and transient ones retried."""

    def __init__(self, client: GraphServiceClient, attempts: int = 4, patience: float | None = None) -> None:
        self._client = client
        self._attempts = attempts
        # A Retry-After longer than this is raised, not waited out (see backoff.retrying); None: always waited.
        self._patience = patience

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        """``action``, retried on throttling and transient failures, its SDK errors translated."""
        async for attempt in retrying(self._attempts, self._patience):
            with attempt:
                try:
                    return await action()
                except Exception as exc:
                    converted = _convert(exc)
                    if converted is exc:
                        raise
                    raise converted from exc
        raise AssertionError("unreachable: tenacity reraises")

    async def _fetch(self, info: RequestInformation) -> dict[str, Any]:
        """Send through the SDK's adapter (auth, retry, redirect middleware), read raw JSON.

        Raw JSON keeps each item exactly as Graph sent it, and skips the SDK's model
        deserialisation, which costs milliseconds of CPU per object.
        """
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        adapter: Any = self._client.request_adapter

        async def send() -> bytes | None:
            raw: bytes | None = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            return raw

        raw = await self._call(send)
        return dict(json.loads(raw or b"{}"))

    @staticmethod
    def _request(method: str, builder: Any, body: dict[str, Any] | None = None) -> RequestInformation:
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        info = RequestInformation(Method(method), builder.url_template, builder.path_parameters)
        info.headers.try_add("Accept", "application/json")
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
        return info

    @property
    def base_url(self) -> str:
        """The Graph base URL the client calls (GRAPH_BASE_URL), without a trailing slash."""
        return str(self._client.request_adapter.base_url).rstrip("/")

    async def fetch_url(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """GET an absolute Graph URL (a nextLink or deltaLink) and return its JSON.

        ``headers`` are sent with it (Outlook's ``Prefer`` must come with every page).
        """
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        info = RequestInformation()
        info.http_method = Method.GET
        info.url = url
        info.headers.try_add("Accept", "application/json")
        for name, value in (headers or {}).items():
            info.headers.try_add(name, value)
        return await self._fetch(info)

    async def fetch_path(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` (e.g. ``users/delta``) under the client's base URL, with OData ``query`` options."""
        from urllib.parse import quote, urlencode

        url = f"{self.base_url}/{quote(path.strip('/'), safe='/,!:@')}"
        if query:
            url += "?" + urlencode(query, safe="$,='", quote_via=quote)
        return await self.fetch_url(url)

    async def drive_delta(self, drive_id: str) -> dict[str, Any]:
        """The first page of a drive's delta, from scratch."""
        root = self._client.drives.by_drive_id(drive_id).items.by_drive_item_id("root")
        return await self._fetch(root.delta.to_get_request_information())

    async def drive_id(self, owner: str, owner_id: str) -> str:
        """The id of a user's, group's or site's default drive."""
        builders = {"users": self._client.users, "groups": self._client.groups, "sites": self._client.sites}
        collection: Any = builders[owner]
        by_id = {"users": "by_user_id", "groups": "by_group_id", "sites": "by_site_id"}[owner]
        drive = await self._call(lambda: getattr(collection, by_id)(owner_id).drive.get())
        if drive is None or not drive.id:
            raise GraphRequestError(f"{owner} has no default drive")
        return str(drive.id)

    async def create_subscription(self, request: SubscriptionRequest) -> RemoteSubscription:
        """POST /subscriptions; Graph runs the validation handshake before answering."""
        resource, encryption = request.resource, request.encryption
        body: dict[str, Any] = {
            "changeType": request.change_type,
            "notificationUrl": request.notification_url,
            "lifecycleNotificationUrl": request.lifecycle_url,
            "resource": resource,
            "expirationDateTime": format_time(request.expires_at),
            "clientState": request.client_state,
        }
        if encryption is not None:
            body |= {
                "includeResourceData": True,
                "encryptionCertificate": encryption[0],
                "encryptionCertificateId": encryption[1],
            }
        info = self._request("POST", self._client.subscriptions, body)
        if _immutable_ids(resource):
            # Notifications then name an Outlook item by the immutable id its delta pages use, so a rich
            # notification and a delta pass give one change one event id (outlook-immutable-id.md).
            from shared.model.catalog import IMMUTABLE_IDS

            info.headers.try_add("Prefer", IMMUTABLE_IDS)
        return _remote(await self._fetch(info))

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime, encryption: tuple[str, str] | None = None
    ) -> datetime:
        """PATCH the expiry (and, given ``encryption``, the certificate); returns the expiry Graph granted.

        Graph's key rotation: "update the encryptionCertificate and encryptionCertificateId
        properties" with PATCH (GD concepts/change-notifications-with-resource-data.md).
        """
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        body: dict[str, Any] = {"expirationDateTime": format_time(expires_at)}
        if encryption is not None:
            body |= {"encryptionCertificate": encryption[0], "encryptionCertificateId": encryption[1]}
        with subscription_call(subscription_id):
            updated = await self._fetch(self._request("PATCH", builder, body))
        granted = updated.get("expirationDateTime")
        return parse_time(granted) if isinstance(granted, str) else expires_at

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        """POST /subscriptions/{id}/reauthorize."""
        builder = self._client.subscriptions.by_subscription_id(subscription_id).reauthorize
        with subscription_call(subscription_id):
            await self._fetch(self._request("POST", builder))

    async def delete_subscription(self, subscription_id: str) -> None:
        """DELETE a subscription; one Graph no longer has counts as deleted."""
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        try:
            await self._fetch(self._request("DELETE", builder))
        except NotFoundError:
            log.info("subscription %s was already gone", subscription_id)

    async def list_subscriptions(
        self, pace: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    ) -> list[RemoteSubscription]:
        """Every subscription this app has at Graph, following nextLinks.

        Each page's request runs inside ``pace()`` when given: listing has a small
        budget of its own at Graph, so a caller can spread the pages out.
        """
        found: list[RemoteSubscription] = []
        url: str | None = None
        for _ in range(100_000):
            async with pace() if pace is not None else contextlib.nullcontext():
                if url is None:
                    page = await self._fetch(self._request("GET", self._client.subscriptions))
                else:
                    page = await self.fetch_url(url)
            found.extend(_remote(item) for item in page.get("value") or [])
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return found
            url = link
        raise GraphRequestError("subscription list exceeded 100,000 pages")


def _remote(subscription: dict[str, Any]) -> RemoteSubscription:
    if not isinstance(subscription, dict) or not subscription.get("id"):
        raise GraphRequestError("Graph returned no subscription")
    expires = subscription.get("expirationDateTime")
    return RemoteSubscription(
        id=str(subscription["id"]),
        resource=str(subscription.get("resource") or "").strip("/"),
        change_type=str(subscription.get("changeType") or ""),
        notification_url=str(subscription.get("notificationUrl") or ""),
        expires_at=parse_time(expires) if isinstance(expires, str) else None,
    )


def _immutable_ids(resource: str) -> bool:
    from shared.model.catalog import readable_kind

    kind = readable_kind(resource.split("?", 1)[0])
    return kind is not None and kind.immutable_ids
