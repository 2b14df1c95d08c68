"""The SharePoint REST adapter: httpx, azure-identity tokens per site origin, tenacity retries.

SharePoint Online refuses client secrets for app-only access, so tokens come
from a certificate credential (or managed identity in Azure), for the scope
``{site origin}/.default``. Callers see plain dicts and this package's errors.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.backoff import retrying
from shared.clock import format_time
from shared.errors import GraphRequestError, NotFoundError, ResyncRequiredError, TransientGraphError, subscription_call
from shared.model.sharepoint import ChangeRecord, SharePointList, expired_token, parse_changes

if TYPE_CHECKING:
    import httpx


log = logging.getLogger(__name__)
ACCEPT = "application/json;odata=nometadata"
# ChangeQuery is a typed complex value: verbose JSON names its type.
VERBOSE = "application/json;odata=verbose"
# Fields read for every item; UniqueId and owshiddenversion are not in '*'.
ITEM_SELECT = "*,UniqueId,owshiddenversion"


def _error(response: httpx.Response, what: str) -> GraphRequestError:
    status = response.status_code
    message = f"SharePoint answered {status} to {what}"
    if status == 404:
        return NotFoundError(message, status)
    if status == 429 or status >= 500:
        header = response.headers.get("retry-after", "")
        return TransientGraphError(message, status, retry_after=float(header) if header.isdigit() else None)
    return GraphRequestError(message, status)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class SharePointClient:
    """The SharePoint REST calls this app makes, with transient failures retried."""

    def __init__(self, credential: Any, http: httpx.AsyncClient, attempts: int = 4) -> None:
        self._credential = credential
        self._http = http
        self._attempts = attempts

    async def close(self) -> None:
        """Close the HTTP client and the credential."""
        await self._http.aclose()
        await self._credential.close()

    async def _send(self, method: str, url: str, what: str, body: Any = None) -> httpx.Response:
        """One call with a bearer token for the URL's origin; 429, 5xx and transport errors are retried."""
        parts = urlsplit(url)
        scope = f"{parts.scheme}://{parts.netloc}/.default"
        async for attempt in retrying(self._attempts):
            with attempt:
                token = await self._credential.get_token(scope)
                headers = {"Authorization": f"Bearer {token.token}", "Accept": ACCEPT}
                if body is not None:
                    headers["Content-Type"] = VERBOSE
                response = await self._http.request(method, url, json=body, headers=headers)
                transient = response.status_code == 429 or response.status_code >= 500
                # An expired change token is an SPException whose status is undocumented: never transient.
                if transient and not expired_token(_body(response)):
                    raise _error(response, what)
                return response
        raise AssertionError("unreachable: tenacity reraises")

    async def _json(self, method: str, url: str, what: str, body: Any = None) -> Any:
        response = await self._send(method, url, what, body)
        if response.status_code >= 300:
            raise _error(response, what)
        return _body(response) if response.content else None

    async def current_token(self, target: SharePointList) -> str:
        """The list's current change token: changes after it are reported by GetChanges."""
        body = await self._json("GET", f"{target.resource}/CurrentChangeToken", "CurrentChangeToken")
        value = body.get("StringValue") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise GraphRequestError("SharePoint returned no change token")
        return value

    async def changes(self, target: SharePointList, token: str, limit: int) -> list[ChangeRecord]:
        """Item changes after ``token``, at most ``limit``; raise ResyncRequiredError when the token expired."""
        query = {
            "query": {
                "__metadata": {"type": "SP.ChangeQuery"},
                "ChangeTokenStart": {"__metadata": {"type": "SP.ChangeToken"}, "StringValue": token},
                "FetchLimit": limit,
                "Item": True,
                "Add": True,
                "Update": True,
                "DeleteObject": True,
                "Rename": True,
                "Restore": True,
                "Move": True,
                "SystemUpdate": True,
            }
        }
        response = await self._send("POST", f"{target.resource}/GetChanges", "GetChanges", query)
        body = _body(response)
        if response.status_code >= 300:
            if expired_token(body):
                raise ResyncRequiredError("the list's change token is older than its change log", None)
            raise _error(response, "GetChanges")
        return parse_changes(body)

    async def items(self, target: SharePointList, url: str | None, top: int) -> Any:
        """A page of the list's items: the first (``url`` None) or the one at a next link."""
        first = f"{target.resource}/items?$select={ITEM_SELECT}&$top={top}"
        return await self._json("GET", url or first, "items")

    async def item(self, target: SharePointList, item_id: int) -> dict[str, Any] | None:
        """One item's fields, or None when it no longer exists."""
        url = f"{target.resource}/items({item_id})?$select={ITEM_SELECT}"
        try:
            body = await self._json("GET", url, "item")
        except NotFoundError:
            return None
        return body if isinstance(body, dict) else None

    async def web_id(self, site: str) -> str:
        """The id of the site's web."""
        body = await self._json("GET", f"{site}/_api/web?$select=Id", "web")
        if not isinstance(body, dict) or not body.get("Id"):
            raise GraphRequestError("SharePoint returned no web id")
        return str(body["Id"])

    async def create_subscription(
        self, target: SharePointList, notification_url: str, client_state: str, expires_at: datetime
    ) -> dict[str, Any]:
        """POST a subscription; SharePoint validates the notification URL before answering."""
        body = {
            "resource": target.resource,
            "notificationUrl": notification_url,
            "expirationDateTime": format_time(expires_at),
            "clientState": client_state,
        }
        created = await self._json("POST", f"{target.resource}/subscriptions", "subscription creation", body)
        if not isinstance(created, dict) or not created.get("id"):
            raise GraphRequestError("SharePoint returned no subscription")
        return created

    async def renew_subscription(self, target: SharePointList, subscription_id: str, expires_at: datetime) -> None:
        """PATCH the expiry (SharePoint answers 204); 404 when it no longer exists."""
        url = f"{target.resource}/subscriptions('{subscription_id}')"
        with subscription_call(subscription_id):
            await self._json("PATCH", url, "subscription renewal", {"expirationDateTime": format_time(expires_at)})

    async def delete_subscription(self, target: SharePointList, subscription_id: str) -> None:
        """DELETE a subscription; 404 when it no longer exists."""
        with subscription_call(subscription_id):
            await self._json("DELETE", f"{target.resource}/subscriptions('{subscription_id}')", "subscription deletion")

    async def subscriptions(self, target: SharePointList) -> list[dict[str, Any]]:
        """The list's subscriptions (every app's)."""
        body = await self._json("GET", f"{target.resource}/subscriptions", "subscription list")
        rows = body.get("value") if isinstance(body, dict) else None
        return [row for row in rows or [] if isinstance(row, dict) and row.get("id")]
