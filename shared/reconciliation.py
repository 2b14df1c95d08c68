"""Reconciliation: what the renew timer must do to match the desired subscriptions (pure).

Three views meet here: what GRAPH_SUBSCRIPTIONS asks for, what the table says
was created, and what Graph actually has. The plan changes Graph and the table
until all three agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .graph import RemoteSubscription
from .lifetimes import renewal_due
from .settings import DesiredSubscription
from .subscriptions import CREATING, SubscriptionRecord

# A record still 'creating' this long after its last write belongs to a run that died.
CREATING_GRACE = timedelta(minutes=10)


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


def plan(
    desired: Iterable[DesiredSubscription],
    records: Iterable[SubscriptionRecord],
    remote: Iterable[RemoteSubscription],
    now: datetime,
    notification_url: str,
) -> Plan:
    """Compare desired, stored and remote subscriptions and list what to change."""
    wanted = {d.key: d for d in desired}
    stored = {r.key: r for r in records}
    ours = [s for s in remote if s.notification_url == notification_url]
    remote_ids = {s.id for s in ours}
    remote_by_key: dict[str, list[str]] = {}
    for sub in ours:
        key = DesiredSubscription(sub.resource.strip("/"), sub.change_type).key
        remote_by_key.setdefault(key, []).append(sub.id)

    result = Plan()
    for key, want in wanted.items():
        record = stored.get(key)
        strays = [i for i in remote_by_key.get(key, []) if record is None or i != record.subscription_id]
        if record is not None and record.status == CREATING:
            if now - record.updated_at < CREATING_GRACE:
                continue  # another run is creating it right now
            result.create.append(want)
        elif record is None:
            result.create.append(want)
        elif record.subscription_id not in remote_ids:
            result.recreate.append(record)
        elif record.expires_at is None or renewal_due(record.resource, record.expires_at, now):
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
