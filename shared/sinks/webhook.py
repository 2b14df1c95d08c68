"""The signed HTTP forward: POST each change event per the Standard Webhooks specification.

Headers ``webhook-id`` (the event id, so receivers can drop duplicates),
``webhook-timestamp`` (the time of this attempt, so a retried or replayed event
still passes a receiver's 5-minute tolerance) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256>``, made by the standardwebhooks package); the body is
the event's JSON, or, with ``"cloudevents": "binary"`` or ``"structured"`` in the sink's
entry, a CloudEvent in that HTTP content mode (``ce-*`` headers and the event as the
body, or ``application/cloudevents+json``), the signature covering the exact body sent.
A short in-process retry (tenacity) covers brief failures and a small ``Retry-After``;
longer waits go back to the runner, which re-enqueues.
Per-item order is kept by the OrderBook (see ordering.py). Concurrency and rate
limits apply per instance. The secret and the signature are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import DeliveryRejectedError, DeliveryRetryError
from shared.model.events import TENANT_KIND, TENANT_REMOVED
from shared.model.sinks import WebhookSink
from shared.sinks.ordering import OrderBook

if TYPE_CHECKING:
    import aiohttp
    from aiolimiter import AsyncLimiter

# Waits longer than this are not spent in the invocation: the runner re-enqueues instead.
IN_PROCESS_WAIT = 5.0
IN_PROCESS_ATTEMPTS = 3


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# Statuses that say the receiver is unavailable for now, not that it refuses this event: a
# timeout, a rate limit, and the door itself (a stopped App Service answers 403, a deploy in
# progress 404, a credential being rotated 401). Standard Webhooks retries every failure.
UNAVAILABLE = frozenset({401, 403, 404, 408, 425, 429})


def classify(status: int, retry_after_header: str | None) -> None:
    """Raise for a failed status: retry 5xx and UNAVAILABLE; reject other 4xx (400, 410, 413, 422…)."""
    if status in UNAVAILABLE or status >= 500:
        raise DeliveryRetryError(f"HTTP {status}", retry_after(retry_after_header))
    if status >= 400:
        raise DeliveryRejectedError(f"HTTP {status}")


async def post_with_retries(send: Any, attempts: int = IN_PROCESS_ATTEMPTS) -> None:
    """Run ``send()`` with a few quick retries, honouring Retry-After up to IN_PROCESS_WAIT."""
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, DeliveryRetryError) else None
        return hint if hint is not None else 0.2 * 2 ** (state.attempt_number - 1)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, DeliveryRetryError) else None
        return stop_after_attempt(attempts)(state) or (hint is not None and hint > IN_PROCESS_WAIT)

    retrying = AsyncRetrying(retry=retry_if_exception_type(DeliveryRetryError), wait=wait, stop=stop, reraise=True)
    async for attempt in retrying:
        with attempt:
            await send()


class WebhookForward:
    """Signs and POSTs events to one URL."""

    def __init__(self, config: WebhookSink, order: OrderBook) -> None:
        from standardwebhooks import Webhook

        self._config = config
        self._order = order
        self._signer = Webhook(config.secret)
        self._gate = asyncio.Semaphore(config.concurrency)
        self._limiter: AsyncLimiter | None = None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._config.timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _rate(self) -> AsyncLimiter | None:
        if self._config.rate_per_second is None:
            return None
        if self._limiter is None:
            from aiolimiter import AsyncLimiter

            self._limiter = AsyncLimiter(self._config.rate_per_second, 1.0)
        return self._limiter

    def headers(self, event_id: str, body: str, now: datetime) -> dict[str, str]:
        """The Standard Webhooks headers for one attempt."""
        return {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(event_id, now, body),
        }

    def request(self, event: dict[str, Any], now: datetime) -> tuple[dict[str, str], bytes]:
        """The headers and body of one attempt: the native event, or a CloudEvent in the sink's content mode.

        The signature covers the exact body sent; a CloudEvent's own headers (``ce-*``, its
        content type) go beside the Standard Webhooks ones.
        """
        event_id = str(event.get("id", ""))
        if self._config.cloudevents is None:
            text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            return self.headers(event_id, text, now), text.encode()
        from shared.model.event_formats import http_message

        try:
            cloud_headers, body = http_message(event, self._config.cloudevents)
        except ValueError as exc:
            raise DeliveryRejectedError(f"not a change event a CloudEvent can carry: {type(exc).__name__}") from exc
        signed = self.headers(event_id, body.decode("utf-8"), now)
        return {**signed, **{name.lower(): value for name, value in cloud_headers.items()}}, body

    async def deliver(self, messages: Sequence[dict[str, Any]]) -> None:
        """Deliver each event in order, keeping per-item order; a removed tenant's order rows go after its event."""
        for event in messages:
            etag = await self._order.claim(event)
            await post_with_retries(lambda event=event: self.post(event))
            await self._order.release(event, etag)
            if event.get("kind") == TENANT_KIND and event.get("changeType") == TENANT_REMOVED:
                await self._order.forget(str(event.get("tenantId") or ""))

    async def abandon(self, messages: Sequence[dict[str, Any]]) -> None:
        """The event was poisoned: later events of its item may go."""
        for event in messages:
            await self._order.release(event)

    async def post(self, event: dict[str, Any]) -> None:
        """POST one event once, signed for this attempt; raise a delivery error for a failed status."""
        import aiohttp

        headers, body = self.request(event, datetime.now(UTC))
        limiter = self._rate()
        async with self._gate:
            if limiter is not None:
                await limiter.acquire()
            try:
                async with self._client().post(self._config.url, data=body, headers=headers) as response:
                    await response.read()
                    classify(response.status, response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise DeliveryRetryError(f"{type(exc).__name__} posting to the webhook") from exc

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
