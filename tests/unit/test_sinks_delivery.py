"""Pure pieces of delivery: status classification, Retry-After, back-off, the card, the messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import DeliveryRejectedError, DeliveryRetryError
from shared.sinks.runner import SinkMessage
from shared.sinks.teams import CARD_TYPE, card
from shared.sinks.webhook import classify, retry_after


@pytest.mark.parametrize("status", [401, 403, 404, 408, 425, 429, 500, 502, 503, 504])
def test_unavailable_statuses_are_retried(status: int) -> None:
    with pytest.raises(DeliveryRetryError):
        classify(status, None)


@pytest.mark.parametrize("status", [400, 405, 410, 413, 415, 422])
def test_refusals_are_rejected(status: int) -> None:
    with pytest.raises(DeliveryRejectedError):
        classify(status, None)


def test_success_passes() -> None:
    classify(200, None)
    classify(204, None)


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("soon") is None


def test_429_carries_retry_after() -> None:
    with pytest.raises(DeliveryRetryError) as info:
        classify(429, "12")
    assert info.value.retry_after == 12.0


def test_sink_message_round_trip_keeps_the_payload_alone_for_poison() -> None:
    event = {"schemaVersion": 1, "id": "e1"}
    since = datetime(2026, 11, 22, 10, 0, 1, 123456, tzinfo=UTC)
    again = SinkMessage.from_text(SinkMessage(event, 3, 1, since).to_text())
    assert (again.payload, again.retries, again.deferrals, again.since) == (event, 3, 1, since)
    assert SinkMessage.from_text(again.payload_text()) == SinkMessage(event)


def test_card_is_a_workflows_message_with_one_adaptive_card() -> None:
    message = card("drives/b!d/root", {"created": 498, "deleted": 2}, ["a.txt", "b.txt"])
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == CARD_TYPE
    assert attachment["content"]["type"] == "AdaptiveCard"
    texts = [block.get("text", "") for block in attachment["content"]["body"]]
    assert "500 changes" in texts and "a.txt, b.txt and 498 more" in texts
