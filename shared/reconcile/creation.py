"""One subscription creation at Graph, recorded before and after the POST (stores/pending.py).

Graph validates the notification URL while it creates a subscription, then may notify at
once: the attempt's clientState is recorded before the POST, and Graph's id right after it,
before the record is saved, so the HTTP path and the queue trigger know the subscription
from the moment Graph does.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from shared.model.subscription import SubscriptionRecord, SubscriptionRequest
from shared.reconcile.gateway import SubscriptionGateway
from shared.stores.pending import PendingCreation, PendingCreations


def thumbprint(public_base64: str) -> str:
    """SHA-1 of a base64 DER certificate, upper-case hex, as Graph names it in ``encryptedContent``."""
    return hashlib.sha1(base64.b64decode(public_base64), usedforsecurity=False).hexdigest().upper()


def encrypted_for(record: SubscriptionRecord, encryption: tuple[str, str]) -> bool:
    """Whether Graph encrypts ``record``'s resource data for the certificate ``encryption`` (base64 DER, id) names."""
    return (record.certificate_id, record.certificate_thumbprint) == (encryption[1], thumbprint(encryption[0]))


async def create_recorded(
    graph: SubscriptionGateway,
    pending: PendingCreations,
    record: SubscriptionRecord,
    urls: tuple[str, str],
    encryption: tuple[str, str] | None,
    expiry: datetime,
    clock: Callable[[], datetime],
) -> PendingCreation:
    """Record the attempt, create the subscription on ``record.graph_resource``, record Graph's answer.

    ``urls`` are the notification and lifecycle URLs. A caller runs this within a write
    budget slot, so the attempt starts when its POST does: the HTTP path answers 503 for
    unknown ids while a POST is in flight.
    """
    attempt = await pending.record(PendingCreation(record.key, secrets.token_urlsafe(32), clock()))
    try:
        request = SubscriptionRequest(
            record.graph_resource, record.change_type, urls[0], urls[1], attempt.client_state, expiry, encryption
        )
        remote = await graph.create_subscription(request)
    except Exception:
        # Refused, most likely: nothing to wait for. (A lost answer leaves a stray the next listing deletes.)
        await pending.settle(attempt)
        raise
    created = replace(
        attempt,
        subscription_id=remote.id,
        expires_at=remote.expires_at or expiry,
        certificate_id=encryption[1] if encryption is not None else "",
        certificate_thumbprint=thumbprint(encryption[0]) if encryption is not None else "",
    )
    # Before the record: a notification Graph sends at once resolves through this row meanwhile.
    return await pending.record(created)
