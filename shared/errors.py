"""Every error this package raises, under one root.

HTTP-facing errors carry the status the endpoint answers with, so the
mapping from cause to status lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class GraphWebhookError(Exception):
    """The root of every error raised by this package."""

    status: int = 500


class SettingsError(GraphWebhookError):
    """A setting is missing or unusable."""


class MissingSettingError(SettingsError):
    """A required setting is absent or empty; the message names it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"missing setting {key}")
        self.key = key


class InvalidSettingError(SettingsError):
    """A setting is present but cannot be used; the message names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid setting {key}: {reason}")
        self.key = key


class InvalidTenantError(GraphWebhookError):
    """A tenant id or name cannot be used (not a GUID, unprintable); the message says why."""


class TenantConflictError(GraphWebhookError):
    """A tenant's row changed between its read and its write (another instance got there first)."""


class MalformedBodyError(GraphWebhookError):
    """The request body is not a notification batch."""

    status = 400


class EventGridEventError(GraphWebhookError):
    """An Event Grid event that is not a Graph notification this app can read."""

    status = 400


class NotStoredError(GraphWebhookError):
    """An event's notification was not stored (storage or its subscription's secret unavailable): redeliver it."""

    status = 503


class BodyTooLargeError(GraphWebhookError):
    """The request body, or one notification in it, exceeds what can be stored."""

    status = 413


class StorageUnavailableError(GraphWebhookError):
    """Storage could not be reached or refused the write: nothing was stored."""

    status = 503


class GraphRequestError(GraphWebhookError):
    """Microsoft Graph answered with an error that no retry will fix."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.graph_status = status
        self.code = code


class TransientGraphError(GraphRequestError):
    """Graph throttled (429) or failed (5xx); the same call may succeed later."""

    def __init__(self, message: str, status: int, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, status, code)
        self.retry_after = retry_after


class NotFoundError(GraphRequestError):
    """Graph or SharePoint answered 404: what was asked for does not exist (any more)."""


class SubscriptionNotFoundError(NotFoundError):
    """Graph (or SharePoint) no longer has the subscription: a 404 to a call on one subscription."""


@contextmanager
def subscription_call(subscription_id: str) -> Iterator[None]:
    """A call on one subscription: there, a 404 means the subscription is gone."""
    try:
        yield
    except SubscriptionNotFoundError:
        raise
    except NotFoundError as exc:
        raise SubscriptionNotFoundError(f"subscription {subscription_id}: {exc}", exc.graph_status, exc.code) from exc


class SubscriptionConflictError(GraphRequestError):
    """Graph already has a subscription for this resource, changeType and URL (409)."""


class SubscriptionPendingError(GraphWebhookError):
    """A subscription is being created and Graph has not named it to this app yet: ask again soon.

    An unknown id may be that subscription's (Graph notifies as soon as it answers the
    creation), so the HTTP path answers 503 and Graph retries, rather than dropping it.
    """

    status = 503


class ResyncRequiredError(GraphRequestError):
    """A delta cursor is stale (410 Gone): the resource must be enumerated again."""

    def __init__(self, message: str, location: str | None) -> None:
        super().__init__(message, 410, "resyncRequired")
        self.location = location


class UnsupportedResourceError(GraphWebhookError):
    """No change source knows how to read this subscription's resource."""


class CursorConflictError(GraphWebhookError):
    """Another instance changed the delta cursor first (ETag mismatch)."""


# Rich notifications (shared/security/).
class ValidationTokenError(GraphWebhookError):
    """A validation token on a rich notification batch failed a check; ``reason`` names which (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"validation token rejected: {reason}")
        self.reason = reason


class AuthorityUnavailableError(GraphWebhookError):
    """The signing keys of the token authority could not be fetched: nothing was stored."""

    status = 503


class DecryptionError(GraphWebhookError):
    """Encrypted resource data could not be decrypted or failed its signature; ``reason`` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"resource data not decrypted: {reason}")
        self.reason = reason


class SinkDeliveryError(GraphWebhookError):
    """A sink could not deliver an event."""


class DeliveryRetryError(SinkDeliveryError):
    """The destination failed for now (timeout, 408, 429, 5xx); ``retry_after`` is its hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRejectedError(SinkDeliveryError):
    """The destination refused the event (a 4xx other than 408 and 429): no retry will help."""


class DeliveryDeferredError(SinkDeliveryError):
    """The message must wait (an earlier event of its item is undelivered, or its window is open)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class OperatorRequestError(GraphWebhookError):
    """An admin CLI request cannot be carried out (unknown id, a seed entry, no such queue); the message says why."""


class ConsentStateError(GraphWebhookError):
    """An admin consent's ``state`` is not one this app signed: missing, forged, altered or unreadable."""

    status = 400


class ExpiredConsentStateError(ConsentStateError):
    """An admin consent's ``state`` was signed by this app but is past its expiry."""


class ReusedConsentStateError(ConsentStateError):
    """An admin consent's ``state`` was redeemed before: each one registers at most one tenant, once."""


class TenantRemovingError(GraphWebhookError):
    """The tenant's removal is under way: it cannot be added or consented again until that finishes."""

    status = 409
