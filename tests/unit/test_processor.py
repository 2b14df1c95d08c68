"""The processor's contract with the Functions host."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from shared import refusals
from shared.model.names import MAX_DEQUEUE_COUNT
from shared.model.notifications import Envelope
from shared.model.subscription import SubscriptionRecord
from shared.processor import Processor
from shared.sync.coalescing import Action
from tests.unit.test_rich_subscriptions import CHANNEL, NOW, Queue, Store, Synchronizer, record

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def test_the_app_poisons_on_the_attempt_the_host_would():
    # The processor moves a message on its last attempt; host.json decides which attempt that is.
    host = json.loads(HOST_JSON.read_text())

    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT


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


class Busy(Synchronizer):
    """A resource whose lease is always held: every notification is deferred; records the times it is judged by."""

    def __init__(self) -> None:
        super().__init__()
        self.judged: list[datetime] = []

    async def sync(self, record: SubscriptionRecord, notified_at: datetime, deferrals: int) -> Any:
        self.judged.append(notified_at)
        return SimpleNamespace(decision=SimpleNamespace(action=Action.DEFER, delay=timedelta(seconds=30)), events=0)


async def test_a_deferred_copy_is_judged_by_when_its_notification_was_first_stored():
    # A copy's own insertion time is after the pass it waited for began: judged by it, the copy
    # was never covered by that pass, and every deferral asked for a pass of its own.
    busy, queue = Busy(), Queue()
    processor = Processor(Store(record("drives/d1/root", NOW)), busy, None, queue, Queue(), lambda: NOW)  # type: ignore[arg-type]
    first = NOW - timedelta(minutes=1)
    items = [{"subscriptionId": "sub-1", "changeType": "updated"}]

    await processor.handle(Envelope("notifications", first, items).to_json(), first)
    await processor.handle(queue.sent[-1], first + timedelta(seconds=30))
    await processor.handle(queue.sent[-1], first + timedelta(seconds=60))

    assert busy.judged == [first, first, first]
    copy = Envelope.from_json(queue.sent[-1])
    assert (copy.notified_at, copy.deferrals, copy.items) == (first, 3, items)
