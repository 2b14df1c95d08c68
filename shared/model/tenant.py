"""The customer tenants a multi-tenant deployment serves, their statuses, and the decisions about them (pure).

In ``single`` mode (TENANT_MODE's default) the app serves GRAPH_TENANT_ID alone, as before
tenants existed: nothing is keyed by tenant, so every key stays what it was. In ``multi``
mode each Microsoft Entra tenant that consented has a row in table ``tenants``, and every
subscription record, cursor, index row, source state and desired entry is keyed by its
tenant (``scoped_key``), so two tenants' equal resources (``users``) never share a key.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.errors import InvalidTenantError

SINGLE = "single"
MULTI = "multi"
TENANT_MODES = (SINGLE, MULTI)

# A tenant's statuses: consent registered it (pending until its first reconcile), it is served,
# its token cannot be had (consent revoked, app deleted), or its removal is under way.
PENDING = "pending"
ACTIVE = "active"
SUSPENDED = "suspended"
REMOVING = "removing"
STATUSES = (PENDING, ACTIVE, SUSPENDED, REMOVING)
# Statuses whose subscriptions are reconciled and whose notifications are stored.
SERVED = frozenset({PENDING, ACTIVE})

# Separates a tenant id from the key it scopes. Resource keys begin with a collection name
# (``users``, ``drives:...``) and never with a GUID, so the prefix cannot be mistaken for one.
SCOPE_SEPARATOR = "~"
# How often a suspended tenant's token is tried again, and how long a name may be.
RETRY_SUSPENDED_EVERY = timedelta(hours=1)
MAX_NAME_LENGTH = 256

# Token failures that mean the tenant no longer lets the app in (not a passing outage):
# 65001 consent missing or revoked, 700016 app not found in the tenant, 7000112 app disabled,
# 7000229 no service principal, 90002 tenant not found, 50020 user/tenant not allowed.
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOST_ACCESS = re.compile(r"AADSTS(65001|700016|7000112|7000229|90002|50020|500011)\b")


@dataclass(frozen=True)
class Tenant:
    """One customer tenant: its id, the name an operator knows it by, and where it stands."""

    tenant_id: str
    name: str
    status: str
    added_at: datetime
    updated_at: datetime
    # Why the tenant was suspended (an AADSTS code and its short meaning), or the last error seen.
    reason: str = ""
    # When it was suspended (for TENANT_SUSPENDED_REMOVE_AFTER) and when its token was last tried.
    suspended_at: datetime | None = None
    checked_at: datetime | None = None

    @property
    def served(self) -> bool:
        """True while its subscriptions are reconciled and its notifications stored."""
        return self.status in SERVED

    def activated(self, now: datetime) -> Tenant:
        """The tenant once it is served: a consent, an onboarding, or a token that works again."""
        return replace(self, status=ACTIVE, updated_at=now, reason="", suspended_at=None, checked_at=now)

    def suspended(self, reason: str, now: datetime) -> Tenant:
        """The tenant once its token was refused for good; the first suspension's time is kept."""
        since = self.suspended_at if self.status == SUSPENDED and self.suspended_at else now
        return replace(self, status=SUSPENDED, reason=reason, updated_at=now, suspended_at=since, checked_at=now)

    def removing(self, now: datetime) -> Tenant:
        """The tenant once its removal has begun (resumed on every tick until done)."""
        return replace(self, status=REMOVING, updated_at=now)


def new_tenant(tenant_id: str, name: str, now: datetime, status: str = PENDING) -> Tenant:
    """A tenant about to be registered; the id is checked and written in its canonical form."""
    return Tenant(canonical_tenant_id(tenant_id), check_name(name), status, now, now)


def canonical_tenant_id(text: str) -> str:
    """A tenant id as this app keys it: a GUID in lower case; InvalidTenantError otherwise.

    A domain name (contoso.onmicrosoft.com) is refused: tokens, notifications and issuers
    name a tenant by its GUID, so a domain would match none of them.
    """
    try:
        value = uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        raise InvalidTenantError(f"{text!r} is not a tenant id (a GUID)") from None
    canonical = str(value)
    if canonical != text.strip().lower():
        raise InvalidTenantError(f"{text!r} is not a tenant id in the 8-4-4-4-12 form")
    return canonical


def check_name(name: str) -> str:
    """A display name: printable, at most MAX_NAME_LENGTH characters."""
    cleaned = name.strip()
    if len(cleaned) > MAX_NAME_LENGTH or not cleaned.isprintable():
        raise InvalidTenantError(f"a tenant name is printable text of at most {MAX_NAME_LENGTH} characters")
    return cleaned


def scoped_key(tenant_id: str, key: str) -> str:
    """``key`` within a tenant: unchanged for the single tenant (''), else prefixed with the tenant's id."""
    return f"{tenant_id}{SCOPE_SEPARATOR}{key}" if tenant_id else key


def scope_of(key: str) -> str:
    """The tenant a scoped key belongs to ('' for an unscoped one)."""
    head, separator, _ = key.partition(SCOPE_SEPARATOR)
    return head if separator and _GUID.fullmatch(head) else ""


def scope_prefix(tenant_id: str) -> str:
    """What every key of ``tenant_id`` begins with (for range queries over one tenant's rows)."""
    return f"{tenant_id}{SCOPE_SEPARATOR}"


def lost_access(message: str) -> str | None:
    """The AADSTS code in a token error that means the tenant withdrew the app, or None for anything else."""
    found = _LOST_ACCESS.search(message)
    return f"AADSTS{found.group(1)}" if found else None


def due_for_retry(tenant: Tenant, now: datetime, every: timedelta = RETRY_SUSPENDED_EVERY) -> bool:
    """True when a suspended tenant's token should be tried again."""
    return tenant.status == SUSPENDED and (tenant.checked_at is None or now - tenant.checked_at >= every)


def due_for_removal(tenant: Tenant, now: datetime, after: timedelta | None) -> bool:
    """True when a tenant suspended for longer than ``after`` (None: never) is to be removed."""
    if tenant.status != SUSPENDED or after is None or tenant.suspended_at is None:
        return False
    return now - tenant.suspended_at >= after
