"""The processor's contract with the Functions host."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from shared import refusals
from shared.notifications import Envelope
from shared.processor import MAX_ATTEMPTS, Processor
from tests.unit.test_rich_subscriptions import CHANNEL, NOW, Queue, Store, Synchronizer, record

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def test_the_app_poisons_on_the_attempt_the_host_would():
    # The processor moves a message on its last attempt; host.json decides which attempt that is.
    host = json.loads(HOST_JSON.read_text())

    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_ATTEMPTS


def refused() -> dict[str, int]:
    counted: dict[str, int] = {}
    for row in refusals.ledger().due(datetime.now(UTC)):
        counted[row.reason.value] = counted.get(row.reason.value, 0) + row.count
    return counted


async def test_notifications_for_a_subscription_no_longer_stored_are_counted():
    processor = Processor(Store(), Synchronizer(), None, Queue(), Queue(), lambda: NOW)  # type: ignore[arg-type]
    items = [{"subscriptionId": "gone", "changeType": "updated"}] * 2

    summary = await processor.handle(Envelope("notifications", NOW, items).to_json())

    assert summary.unknown == 2
    assert refused() == {"unknownSubscription": 2}


async def test_resource_data_without_a_certificate_is_counted_as_not_decrypted():
    teams = record(CHANNEL, NOW)
    processor = Processor(Store(teams), Synchronizer(), None, Queue(), Queue(), lambda: NOW)  # type: ignore[arg-type]
    items = [{"subscriptionId": "sub-1", "changeType": "created", "encryptedContent": {"data": "..."}}]

    await processor.handle(Envelope("notifications", NOW, items).to_json())

    assert refused() == {"decryptionFailed": 1}
