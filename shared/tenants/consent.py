"""Admin consent: `/api/consent/start` sends an admin to the identity platform, `/api/consent` takes the reply.

The reply (Microsoft identity platform, "Admin consent on the Microsoft identity platform",
learn.microsoft.com/entra/identity-platform/v2-admin-consent) comes back to the redirect URI
with ``tenant``, ``admin_consent=True``, ``scope`` and ``state``; or, on failure, with
``error`` and ``error_description`` besides. Only a reply whose ``state`` this app signed,
within the hour and for the first time, registers its tenant; every other one registers
nothing, is counted by reason and gets a page that says why.

The state proves the flow began at this app; it cannot prove that the admin consented, as
anyone may start the flow and type a reply. A tenant registered without consent fails to
get a token and is suspended, then removed after TENANT_SUSPENDED_REMOVE_AFTER.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from shared import refusals
from shared.errors import (
    ConsentStateError,
    ExpiredConsentStateError,
    GraphWebhookError,
    InvalidTenantError,
    ReusedConsentStateError,
    StorageUnavailableError,
    TenantConflictError,
    TenantRemovingError,
)
from shared.logs import log_event
from shared.model.tenant import canonical_tenant_id, check_name
from shared.refusals import Reason
from shared.tenants import pages
from shared.tenants.onboarding import register_consent, schedule
from shared.tenants.pages import Page
from shared.tenants.state import ConsentState, new_state, read_state, sign_state

if TYPE_CHECKING:
    from shared.queues.message_queue import MessageQueue
    from shared.stores.tenants import TenantStore
    from shared.tenants.state_store import ConsentStateStore

log = logging.getLogger(__name__)
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# The v2.0 endpoint under "organizations": any work or school tenant's admin may consent.
CONSENT_PATH = "/organizations/v2.0/adminconsent"
# The reply's value of admin_consent when an admin consented (the documented "True").
GRANTED = "true"
SOURCE = "consent"


@dataclass(frozen=True)
class ConsentRequest:
    """The fixed parts of the admin consent URL: authority, app registration, scope, redirect URI."""

    authority_host: str
    client_id: str
    scope: str
    redirect_url: str

    def url(self, state: str) -> str:
        """The admin consent endpoint's URL, with ``state``."""
        query = {"client_id": self.client_id, "scope": self.scope, "redirect_uri": self.redirect_url, "state": state}
        authority = (self.authority_host or DEFAULT_AUTHORITY).rstrip("/")
        return f"{authority}{CONSENT_PATH}?{urlencode(query)}"


class ConsentFlow:
    """The two routes' work: a signed state out, a reply checked and its tenant registered."""

    def __init__(
        self, request: ConsentRequest, tenants: TenantStore, states: ConsentStateStore, queue: MessageQueue
    ) -> None:
        self._request = request
        self._tenants = tenants
        self._states = states
        self._queue = queue
        self._tenants_ready = False

    async def start(self, params: Mapping[str, str], now: datetime) -> Page:
        """302 to the admin consent endpoint, with a new state naming ``name`` (optional)."""
        try:
            name = check_name(params.get("name", ""))
        except InvalidTenantError:
            return _refuse(Reason.CONSENT_BAD_NAME)
        try:
            key = await self._states.signing_key()
        except _storage_errors() as exc:
            return _failed("consent.start_failed", exc)
        return pages.redirect(self._request.url(sign_state(new_state(name, now), key)))

    async def finish(self, params: Mapping[str, str], now: datetime) -> Page:
        """Check the identity platform's reply; register its tenant as active and ask for its subscriptions."""
        error = params.get("error", "")
        if error:
            # Not a secret, but not for the page: an admin's helpdesk reads it in the log.
            log_event(
                log,
                "consent.declined",
                logging.WARNING,
                error=error[:100],
                error_description=params.get("error_description", "")[:1000],
                tenant=params.get("tenant", "")[:64],
            )
            return _refuse(Reason.CONSENT_DECLINED, error)
        token = params.get("state", "")
        if not token:
            return _refuse(Reason.CONSENT_NO_STATE)
        try:
            state = await self._verified(token, now)
        except ExpiredConsentStateError:
            return _refuse(Reason.CONSENT_EXPIRED_STATE)
        except ConsentStateError:
            return _refuse(Reason.CONSENT_BAD_STATE)
        except _storage_errors() as exc:
            return _failed("consent.failed", exc)
        if params.get("admin_consent", "").strip().lower() != GRANTED:
            return _refuse(Reason.CONSENT_NOT_GRANTED)
        try:
            tenant_id = canonical_tenant_id(params.get("tenant", ""))
        except InvalidTenantError:
            return _refuse(Reason.CONSENT_BAD_TENANT)
        try:
            return await self._register(state, tenant_id, now)
        except ReusedConsentStateError:
            return _refuse(Reason.CONSENT_REUSED_STATE)
        except TenantRemovingError:
            return _refuse(Reason.CONSENT_TENANT_REMOVING)
        except _storage_errors() as exc:
            return _failed("consent.failed", exc, tenant_id=tenant_id)

    async def _verified(self, token: str, now: datetime) -> ConsentState:
        return read_state(token, await self._states.signing_key(), now)

    async def _register(self, state: ConsentState, tenant_id: str, now: datetime) -> Page:
        # Redeemed first: of two replies with one state, exactly one registers its tenant.
        if not await self._states.redeem(state, now):
            raise ReusedConsentStateError("the state was redeemed before")
        await self._prune(now)
        if not self._tenants_ready:
            await self._tenants.setup()  # once per process: the table may not exist before the first tenant
            self._tenants_ready = True
        registration = await register_consent(self._tenants, tenant_id, state.name, now)
        log_event(log, "consent.registered", tenant_id=tenant_id, outcome=registration.outcome)
        try:
            await schedule(self._queue, tenant_id, now)
        except StorageUnavailableError as exc:
            # The tenant is active: the next renew tick reconciles it, so the admin still reads "connected".
            log_event(log, "consent.schedule_failed", logging.WARNING, tenant_id=tenant_id, error=str(exc))
        return pages.connected(tenant_id, registration.tenant.name)

    async def _prune(self, now: datetime) -> None:
        try:
            await self._states.prune(now)
        except _storage_errors() as exc:  # pruning is housekeeping: the next redemption prunes again
            log_event(log, "consent.prune_failed", logging.WARNING, error=type(exc).__name__)


def _refuse(reason: Reason, error_code: str = "") -> Page:
    refusals.count(reason, source=SOURCE)
    log_event(log, "consent.refused", reason=reason.value)
    return pages.refused(reason, error_code)


def _storage_errors() -> tuple[type[Exception], ...]:
    """What a storage call raises when storage fails (the SDK's errors, or the app's wrapping of them)."""
    from azure.core.exceptions import AzureError

    return (AzureError, StorageUnavailableError, TenantConflictError)


def _failed(event: str, exc: Exception, **fields: str) -> Page:
    """Storage failed: 503, nothing is known to be registered, the admin tries again."""
    detail = str(exc) if isinstance(exc, GraphWebhookError) else type(exc).__name__
    log_event(log, event, logging.ERROR, error=detail, **fields)
    return pages.unavailable()
