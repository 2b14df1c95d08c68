"""Reconciliation: what the renew timer must do to match the desired subscriptions (pure).

Three views meet here: what GRAPH_SUBSCRIPTIONS asks for, what the table says
was created, and what Graph actually has. The plan changes Graph and the table
until all three agree. Graph's view is optional: listing it has a small budget
of its own, so a tick may plan from the table alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.model.catalog import split_resource
from shared.model.lifetimes import renewal_due
from shared.model.resources import DesiredSubscription
from shared.model.subscription import ACTIVE, CREATING, RemoteSubscription, SubscriptionRecord
from shared.stores.pending import PendingCreation

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
    pending: Mapping[str, str] | None = None,
    certificate: tuple[str, str] | None = None,
    tenant: str = "",
) -> Plan:
    """Compare desired, stored and (when listed) remote subscriptions and list what to change.

    With ``remote`` None, Graph's view is unknown this tick: nothing is re-created for
    being missing from it and no stray is deleted (a 404 on renewal still re-creates).
    ``pending`` maps a record's key to the id Graph gave a creation its record does not
    name yet (stores/pending.py): that subscription is adopted, never deleted as a stray.
    ``certificate`` (id, thumbprint) is the one rich subscriptions must be encrypted for:
    a subscription on another is renewed now, which moves it. ``tenant`` is the tenant
    whose subscriptions Graph listed (a multi-tenant deployment reconciles each apart).
    """
    wanted = {d.key: d for d in desired}
    stored = {r.key: r for r in records}
    adopting = pending or {}
    known_remote = remote is not None
    # Ours: delivered to this app's webhook, or to a partner topic an entry or a record names.
    targets = {notification_url} | {d.delivery for d in wanted.values()} | {r.delivery for r in stored.values()}
    ours = [s for s in remote or () if s.notification_url in targets - {""}]
    remote_by_id = {s.id: s for s in ours}
    remote_by_key: dict[str, list[str]] = {}
    for sub in ours:
        remote_by_key.setdefault(_remote_key(sub, tenant), []).append(sub.id)

    result = Plan()
    for key, want in wanted.items():
        record = stored.get(key)
        # Graph gives a duplicate its own id (no 409): two runs, or a crash between Graph's answer and
        # the save, leave extra subscriptions on a resource. All but the recorded (or adopted) one go.
        keep = {record.subscription_id if record is not None else "", adopting.get(key, "")}
        strays = [i for i in remote_by_key.get(key, []) if i not in keep]
        if record is None:
            result.create.append(want)
        elif record.status != ACTIVE:
            if record.status == CREATING and now - record.updated_at < CREATING_GRACE:
                continue  # another run is creating it right now
            # A failed or dead attempt: retried now. A record that still holds its old id is re-created.
            if record.subscription_id:
                result.recreate.append(replace(record, query=want.query, delivery=want.delivery))
            else:
                result.create.append(want)
        elif (
            record.query != want.query
            or record.delivery != want.delivery
            or (known_remote and record.subscription_id not in remote_by_id)
        ):
            # Graph cannot change a subscription's resource: a new query, or a move between a webhook
            # and a partner topic, needs a new subscription (the old one goes once it is live).
            result.recreate.append(replace(record, query=want.query, delivery=want.delivery))
        elif _renewal_due(record, remote_by_id.get(record.subscription_id), now, want.include_resource_data):
            result.renew.append(record)
        elif want.include_resource_data and certificate is not None and _certificate(record) != certificate:
            result.renew.append(record)  # encrypted for an old certificate: the renewal moves it
        result.delete_remote.extend(strays)

    known_ids = {r.subscription_id for r in stored.values() if r.subscription_id}
    for key, record in stored.items():
        if key not in wanted:
            result.delete.append(record)
    for key, ids in remote_by_key.items():
        if key not in wanted:
            result.delete_remote.extend(i for i in ids if i not in known_ids)
    return result


def sort_pending(
    rows: Iterable[PendingCreation], records: Iterable[SubscriptionRecord], now: datetime
) -> tuple[list[PendingCreation], dict[str, str]]:
    """The pending rows whose creation is over, and the ids Graph gave creations whose record is still to save.

    Over: the record went, or is active (naming the id: done; another: a race lost), or a POST
    without an answer is older than any POST lasts. A row naming an id whose record is not active
    is a creation Graph answered before a crash: the next attempt adopts that subscription.
    """
    stored = {r.key: r for r in records}
    finished: list[PendingCreation] = []
    adopting: dict[str, str] = {}
    for row in rows:
        record = stored.get(row.key)
        if record is None or record.status == ACTIVE or not (row.subscription_id or row.in_flight(now)):
            finished.append(row)
        elif row.subscription_id:
            adopting[row.key] = row.subscription_id
    return finished, adopting


def _remote_key(sub: RemoteSubscription, tenant: str) -> str:
    """The desired key a subscription listed by Graph stands for (its resource's query aside)."""
    path, _ = split_resource(sub.resource)
    return DesiredSubscription(path, sub.change_type, tenant=tenant).key


def _certificate(record: SubscriptionRecord) -> tuple[str, str]:
    return record.certificate_id, record.certificate_thumbprint


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
