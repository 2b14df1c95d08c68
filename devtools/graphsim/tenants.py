"""The tenants the simulator serves: consent, revoked consent, and each one's state, made on first use.

The home tenant (``SimConfig.tenant_id``) always exists and has consented. Other tenants come
by admin consent (consent.py) or by the control API (routes/control_tenants.py), with or
without consent. The registry answers what the identity platform and Graph ask of a tenant:
may the app get a token from it (an ``AADSTS`` error otherwise: 90002 unknown tenant, 65001
no consent, 7000112 app disabled, 700016 app not in the directory), and may a token of it
call Graph (401 ``InvalidAuthenticationToken`` otherwise).

A record is a few fields; its tenant's state (state.py) is made on first use, so a thousand
tenants with nothing in them cost little and nothing at start-up.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .clock import SimClock
from .config import SimConfig
from .errors import GraphError
from .faults import FaultInjector, WriteThrottle
from .models.subscriptions import SubscriptionStore

TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Authorities that name no one tenant.
GENERIC = frozenset({"common", "organizations", "consumers"})
APP_NAME = "graphsim-client"  # the app's display name, as in its tokens (auth.py)
REVOCATIONS = (65001, 7000112, 700016)


class TenantState(Protocol):
    """What the registry reads of a tenant's state (state.py's SimState)."""

    tenant_id: str
    config: SimConfig
    clock: SimClock
    subs: SubscriptionStore
    faults: FaultInjector
    throttle: WriteThrottle
    subscription_writes: int
    graph_requests: int


S = TypeVar("S", bound=TenantState)
AadError = tuple[int, str, int, str]  # (HTTP status, error, AADSTS code, text) for identity.py's _aad_error


def unknown_tenant(tenant: str) -> AadError:
    """AADSTS90002: no such tenant."""
    return (
        400,
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the "
        "correct tenant ID and are signing into the correct cloud.",
    )


def app_not_found(client_id: str, tenant: str) -> AadError:
    """AADSTS700016: the app has no service principal in the tenant."""
    return (
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        "This can happen if the application has not been installed by the administrator of the tenant "
        "or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    )


def refusal(code: int, client_id: str, tenant: str) -> AadError:
    """The token endpoint's answer for a tenant without consent (65001), or whose app is disabled or gone."""
    if code == 7000112:
        return 400, "unauthorized_client", 7000112, f"Application '{client_id}'({APP_NAME}) is disabled."
    if code == 700016:
        return app_not_found(client_id, tenant)
    return (
        400,
        "invalid_grant",
        65001,
        f"The user or administrator has not consented to use the application with ID '{client_id}' "
        f"named '{APP_NAME}'. Send an interactive authorization request for this user and resource.",
    )


@dataclass(eq=False)
class Tenant(Generic[S]):
    """One tenant: whether the app's admin consent stands, and its state once something used it."""

    id: str
    consented: bool
    revoked: int | None = None  # the AADSTS code its token requests fail with, while revoked
    state: S | None = None

    @property
    def active(self) -> bool:
        """Whether the app can get tokens from it and call Graph with them."""
        return self.consented and self.revoked is None

    def as_json(self, home: str) -> dict[str, Any]:
        """For the control API: the record and, if it has a state, its counters."""
        body: dict[str, Any] = {
            "tenant": self.id,
            "home": self.id == home,
            "consented": self.consented,
            "revoked": self.revoked,
            "active": self.active,
        }
        if self.state is not None:
            now = self.state.clock.now()
            storm = self.state.faults.storm
            body |= {
                "subscriptionsActive": len(self.state.subs.for_app(self.state.config.client_id, now)),
                "subscriptionWrites": self.state.subscription_writes,
                "graphRequests": self.state.graph_requests,
                "throttled": self.state.throttle.throttled,
                "storm": storm.as_json(now) if storm is not None and storm.until > now else None,
            }
        return body


DENIALS = ("consent_required", "access_denied")


@dataclass(frozen=True)
class ConsentDecision:
    """What the next admin consent request does: accept (for ``tenant``, or the request's) or deny with ``error``."""

    accept: bool
    tenant: str | None = None
    error: str = DENIALS[0]

    def as_json(self) -> dict[str, Any]:
        """For the control API."""
        return {
            "decision": "accept" if self.accept else "deny",
            "tenant": self.tenant,
            "error": None if self.accept else self.error,
        }


class Tenants(Generic[S]):
    """The registry: tenants by id (case-insensitive), with the home tenant always there."""

    def __init__(self, home: S, make: Callable[[str], S]) -> None:
        self.home_id = home.tenant_id
        self._make = make
        self.records: dict[str, Tenant[S]] = {self.home_id.lower(): Tenant(self.home_id, True, state=home)}
        self.decisions: deque[ConsentDecision] = deque()

    def get(self, tenant: str | None) -> Tenant[S] | None:
        """A tenant by id, or None."""
        return self.records.get(tenant.lower()) if tenant else None

    def add(self, tenant: str, consented: bool) -> tuple[Tenant[S], bool]:
        """Register a tenant (or set an existing one's consent); (record, whether it is new)."""
        if not TENANT_ID.match(tenant) or tenant.lower() in GENERIC:
            raise ValueError(f"'{tenant}' is not a tenant id")
        found = self.get(tenant)
        if found is not None:
            found.consented = consented
            if consented:
                found.revoked = None
            return found, False
        record: Tenant[S] = Tenant(tenant, consented)
        self.records[tenant.lower()] = record
        return record, True

    def remove(self, tenant: Tenant[S]) -> None:
        """Forget a tenant (not the home tenant): its token requests answer AADSTS90002 from then on."""
        if tenant.id == self.home_id:
            raise ValueError("the home tenant cannot be removed")
        self.records.pop(tenant.id.lower(), None)

    def state_of(self, tenant: Tenant[S]) -> S:
        """The tenant's state, made on first use."""
        if tenant.state is None:
            tenant.state = self._make(tenant.id)
        return tenant.state

    def states(self) -> list[S]:
        """The states made so far, the home tenant's first."""
        return [t.state for t in self.records.values() if t.state is not None]

    def token_refusal(self, tenant: str, client_id: str) -> AadError | None:
        """Why the token endpoint of ``tenant`` refuses the app (after its client id checked out), or None."""
        record = self.get(tenant)
        if record is None:
            return unknown_tenant(tenant)
        if record.revoked is not None:
            return refusal(record.revoked, client_id, record.id)
        if not record.consented:
            return refusal(65001, client_id, record.id)
        return None

    def graph_state(self, claims: dict[str, Any]) -> S:
        """The state of the tenant a Graph token was issued for; 401 when it is unknown or has no consent now."""
        record = self.get(claims.get("tid"))
        if record is None or not record.active:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. The application is not authorized in the token's tenant.",
            )
        return self.state_of(record)

    def consent(self, tenant: str) -> Tenant[S]:
        """An admin of ``tenant`` granted consent: the tenant exists and is active from now on."""
        record, _ = self.add(tenant, True)
        return record

    def next_decision(self) -> ConsentDecision | None:
        """The decision the control API queued for the next consent request (used up), or None."""
        return self.decisions.popleft() if self.decisions else None

    def reset(self) -> list[S]:
        """Forget every tenant but the home tenant, and queued decisions; the states dropped."""
        home = self.records[self.home_id.lower()]
        home.consented, home.revoked = True, None
        dropped = [t.state for t in self.records.values() if t.state is not None and t is not home]
        self.records = {self.home_id.lower(): home}
        self.decisions.clear()
        return dropped
