"""Reconciliation: what the renew timer must do to match the desired subscriptions (pure).

Three views meet here: what GRAPH_SUBSCRIPTIONS asks for, what the table says
was created, and what Graph actually has. The plan changes Graph and the table
until all three agree. Graph's view is optional: listing it has a small budget
of its own, so a tick may plan from the table alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .graph import RemoteSubscription
from .lifetimes import renewal_due
from .settings import DesiredSubscription
from .stores.subscriptions import ACTIVE, CREATING, SubscriptionRecord

# Graph answers a creation only after two validation handshakes of at most 10 s each
# (notification and lifecycle URLs); with the write itself and a retry or two, an
# attempt older than this died, and the next tick (every 5 minutes) repairs it.
CREATING_GRACE = timedelta(minutes=2)
# Graph's subscription list: about 100 per page, and a budget of about 40 requests per 20 s.
LIST_PAGE_SIZE = 100
# Listing this many pages costs little enough to do every tick (up to 1,000 subscriptions).
LIST_PAGES_EVERY_TICK = 10
# Larger sets are listed this often; renewals and the sweep do not depend on the list.
LIST_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Plan:
    """The changes one reconciliation makes, by kind."""

    create: list[DesiredSubscription] = field(default_factory=list)
    renew: list[SubscriptionRecord] = field(default_factory=list)
    recreate: list[SubscriptionRecord] = field(default_factory=list)
    delete: list[SubscriptionRecord] = field(default_factory=list)
    delete_remote: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when nothing needs doing."""
        return not (self.create or self.renew or self.recreate or self.delete or self.delete_remote)


def listing_due(subscriptions: int, listed_at: datetime | None, now: datetime) -> bool:
    """Whether this tick lists Graph's subscriptions: always when cheap, else once per LIST_EVERY."""
    pages = max(1, math.ceil(subscriptions / LIST_PAGE_SIZE))
    return pages <= LIST_PAGES_EVERY_TICK or listed_at is None or now - listed_at >= LIST_EVERY


def plan(
    desired: Iterable[DesiredSubscription],
    records: Iterable[SubscriptionRecord],
    remote: Iterable[RemoteSubscription] | None,
    now: datetime,
    notification_url: str,
) -> Plan:
    """Compare desired, stored and (when listed) remote subscriptions and list what to change.

    With ``remote`` None, Graph's view is unknown this tick: nothing is re-created for
    being missing from it and no stray is deleted (a 404 on renewal still re-creates).
    """
    wanted = {d.key: d for d in desired}
    stored = {r.key: r for r in records}
    known_remote = remote is not None
    ours = [s for s in remote or () if s.notification_url == notification_url]
    remote_by_id = {s.id: s for s in ours}
    remote_by_key: dict[str, list[str]] = {}
    for sub in ours:
        key = DesiredSubscription(sub.resource.strip("/"), sub.change_type).key
        remote_by_key.setdefault(key, []).append(sub.id)

    result = Plan()
    for key, want in wanted.items():
        record = stored.get(key)
        strays = [i for i in remote_by_key.get(key, []) if record is None or i != record.subscription_id]
        if record is None:
            result.create.append(want)
        elif record.status != ACTIVE:
            if record.status == CREATING and now - record.updated_at < CREATING_GRACE:
                continue  # another run is creating it right now
            # A failed or dead attempt: retried now. A record that still holds its old id is re-created.
            if record.subscription_id:
                result.recreate.append(record)
            else:
                result.create.append(want)
        elif known_remote and record.subscription_id not in remote_by_id:
            result.recreate.append(record)
        elif _renewal_due(record, remote_by_id.get(record.subscription_id), now, want.include_resource_data):
            result.renew.append(record)
        # Graph allows one subscription per combination: a stray would make creation fail with 409.
        result.delete_remote.extend(strays)

    known_ids = {r.subscription_id for r in stored.values() if r.subscription_id}
    for key, record in stored.items():
        if key not in wanted:
            result.delete.append(record)
    for key, ids in remote_by_key.items():
        if key not in wanted:
            result.delete_remote.extend(i for i in ids if i not in known_ids)
    return result


def _renewal_due(
    record: SubscriptionRecord, listed: RemoteSubscription | None, now: datetime, include_resource_data: bool = False
) -> bool:
    """Due by the earlier of the table's expiry and Graph's: Graph's word wins when it is sooner.

    With resource data some resources live shorter (Outlook: 1,440 minutes, not 10,080):
    measured against the longer lifetime, such a subscription would look due every tick.
    """
    if record.expires_at is None:
        return True  # the table never learnt the expiry
    expires_at = record.expires_at
    if listed is not None and listed.expires_at is not None:
        expires_at = min(expires_at, listed.expires_at)
    return renewal_due(record.resource, expires_at, now, include_resource_data)
