"""Pure pieces of delivery: status classification, Retry-After, back-off, the card, the messages."""

from __future__ import annotations

import pytest

from shared.errors import DeliveryRejectedError, DeliveryRetryError
from shared.sinks.runner import MAX_DELAY, SinkMessage, backoff
from shared.sinks.teams import CARD_TYPE, card
from shared.sinks.webhook import classify, retry_after


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_retryable_statuses(status: int) -> None:
    with pytest.raises(DeliveryRetryError):
        classify(status, None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
def test_other_client_errors_are_rejected(status: int) -> None:
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


def test_backoff_doubles_honours_retry_after_and_is_capped() -> None:
    assert [backoff(n, 2.0, None) for n in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(0, 2.0, 30.0) == 30.0
    assert backoff(40, 2.0, None) == MAX_DELAY


def test_sink_message_round_trip_keeps_the_payload_alone_for_poison() -> None:
    event = {"schemaVersion": 1, "id": "e1"}
    again = SinkMessage.from_text(SinkMessage(event, 3, 1).to_text())
    assert (again.payload, again.retries, again.deferrals) == (event, 3, 1)
    assert SinkMessage.from_text(again.payload_text()) == SinkMessage(event)


def test_card_is_a_workflows_message_with_one_adaptive_card() -> None:
    message = card("drives/b!d/root", {"created": 498, "deleted": 2}, ["a.txt", "b.txt"])
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == CARD_TYPE
    assert attachment["content"]["type"] == "AdaptiveCard"
    texts = [block.get("text", "") for block in attachment["content"]["body"]]
    assert "500 changes" in texts and "a.txt, b.txt and 498 more" in texts
