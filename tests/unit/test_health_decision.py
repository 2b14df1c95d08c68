"""The health decision (pure) and its cache: what a load balancer and an operator see."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from shared.health import HealthMonitor, Snapshot, assess
from shared.refusals import Reason, Totals

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
QUEUES = {"graph-notifications": 2, "graph-notifications-poison": 0, "graph-changes": 5}


def healthy(**changes: object) -> Snapshot:
    fields: dict[str, object] = {
        "checked_at": NOW,
        "expiries": (NOW + timedelta(days=2), NOW + timedelta(hours=5), None),
        "queue_depths": QUEUES,
        "oldest_sync": NOW - timedelta(minutes=4),
        "refusals": Totals({}, {}),
    }
    fields.update(changes)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_a_working_app_answers_200_with_its_figures():
    verdict = assess(healthy(), NOW)

    assert verdict.status == 200
    assert verdict.body["status"] == "healthy"
    assert verdict.body["reasons"] == []
    assert verdict.body["subscriptions"] == {"count": 3, "earliestExpiry": "2026-11-22T15:00:00.000000Z", "pastDue": 0}
    assert verdict.body["queues"] == QUEUES
    assert verdict.body["oldestSyncAgeSeconds"] == 240.0


def test_storage_unreachable_answers_503_naming_it():
    verdict = assess(healthy(storage_error="ServiceRequestError", expiries=None, queue_depths={}), NOW)

    assert verdict.status == 503
    assert verdict.body["reasons"] == ["storage unreachable (ServiceRequestError)"]
    assert verdict.body["storage"] == {"reachable": False}
    assert verdict.body["subscriptions"] is None


def test_no_graph_token_answers_503_naming_it():
    verdict = assess(healthy(token_error="ClientAuthenticationError"), NOW)

    assert verdict.status == 503
    assert verdict.body["reasons"] == ["no Graph token (ClientAuthenticationError)"]


def test_a_subscription_past_its_expiry_answers_503():
    verdict = assess(healthy(expiries=(NOW - timedelta(seconds=1), NOW + timedelta(days=1))), NOW)

    assert verdict.status == 503
    assert verdict.body["reasons"] == ["1 subscription(s) past their expiry"]
    assert verdict.body["subscriptions"]["pastDue"] == 1


def test_a_poisoned_message_is_a_warning_not_an_outage():
    verdict = assess(healthy(queue_depths={**QUEUES, "graph-notifications-poison": 3}), NOW)

    assert verdict.status == 200
    assert verdict.body["warnings"] == ["3 message(s) in graph-notifications-poison"]


def test_refusals_are_shown_by_reason_for_the_last_hour_and_day():
    totals = Totals({Reason.UNKNOWN_SUBSCRIPTION: 2}, {Reason.UNKNOWN_SUBSCRIPTION: 9, Reason.BAD_CLIENT_STATE: 1})
    verdict = assess(healthy(refusals=totals), NOW)

    assert verdict.status == 200
    assert verdict.body["warnings"] == []  # routine: a deleted subscription's last notifications, say
    refused = verdict.body["refusals"]
    assert refused["lastHour"]["unknownSubscription"] == 2 and refused["lastHour"]["badClientState"] == 0
    assert refused["last24Hours"]["unknownSubscription"] == 9 and refused["last24Hours"]["badClientState"] == 1
    assert set(refused["lastHour"]) == set(refused["last24Hours"]) == {reason.value for reason in Reason}


def test_a_broken_certificate_or_consent_in_the_last_hour_is_a_warning():
    totals = Totals({Reason.DECRYPTION_FAILED: 4, Reason.BAD_VALIDATION_TOKEN: 1}, {Reason.DECRYPTION_FAILED: 4})
    verdict = assess(healthy(refusals=totals), NOW)

    assert verdict.status == 200
    assert verdict.body["warnings"] == [
        "1 item(s) refused in the last hour: badValidationToken",
        "4 item(s) refused in the last hour: decryptionFailed",
    ]


def test_refusal_counts_that_cannot_be_read_are_a_warning_not_an_outage():
    verdict = assess(healthy(refusals=None, refusals_error="timeout"), NOW)

    assert verdict.status == 200
    assert verdict.body["refusals"] is None
    assert verdict.body["warnings"] == ["refusal counts unavailable (timeout)"]


def test_the_body_is_plain_json_with_no_setting_in_it():
    text = json.dumps(assess(healthy(), NOW).body)

    assert "AccountKey" not in text and "clientState" not in text and 'token":"' not in text


class CountingProbe:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()

    async def __call__(self) -> Snapshot:
        self.calls += 1
        await self.gate.wait()
        return healthy()


async def test_concurrent_probes_share_one_round_of_checks():
    probe = CountingProbe()
    monitor = HealthMonitor(probe, ttl=30)

    waiting = [asyncio.create_task(monitor.check(NOW)) for _ in range(50)]
    await asyncio.sleep(0)
    probe.gate.set()
    verdicts = await asyncio.gather(*waiting)

    assert probe.calls == 1
    assert {v.status for v in verdicts} == {200}


async def test_the_snapshot_is_reused_until_it_is_older_than_the_ttl():
    probe = CountingProbe()
    probe.gate.set()
    clock = [100.0]
    monitor = HealthMonitor(probe, ttl=30, monotonic=lambda: clock[0])

    for _ in range(20):
        await monitor.check(NOW)
    clock[0] += 29
    await monitor.check(NOW)
    assert probe.calls == 1

    clock[0] += 2
    await monitor.check(NOW)
    assert probe.calls == 2


async def test_past_due_is_judged_at_answer_time_from_a_cached_snapshot():
    # A subscription that expires while the snapshot is cached is reported at once.
    expiry = NOW + timedelta(seconds=10)
    probe = CountingProbe()
    probe.gate.set()

    async def snapshot() -> Snapshot:
        await probe()
        return healthy(expiries=(expiry,))

    monitor = HealthMonitor(snapshot, ttl=30)
    assert (await monitor.check(NOW)).status == 200
    assert (await monitor.check(NOW + timedelta(seconds=11))).status == 503
    assert probe.calls == 1
