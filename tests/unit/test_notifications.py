"""The HTTP path's pure rules: handshake, batch parsing, clientState checks, queue envelopes."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from shared.errors import BodyTooLargeError, MalformedBodyError
from shared.ingest.receiver import answer_handshake
from shared.model import notifications
from shared.model.notifications import (
    MAX_BODY_BYTES,
    MAX_ITEMS_PER_BATCH,
    MAX_MESSAGE_JSON_BYTES,
    ClaimedItem,
    Envelope,
    check_items,
    encode_item,
    handshake_token,
    pack_items,
    parse_batch,
    stored_form,
)

RECEIVED = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)
SECRETS = {
    "aa269f87-2a92-4cff-a43e-2771878c3727": "secretClientValue",
    "7f105c7d-2dc5-4530-97cd-4e7ae6534c07": "anotherSecretClientValue",
}
LIFECYCLE_PAYLOADS = (
    "lifecycle-reauthorization-required.json",
    "lifecycle-subscription-removed.json",
    "lifecycle-missed.json",
)


def split(envelope: Envelope, limit: int = MAX_MESSAGE_JSON_BYTES) -> list[str]:
    """The envelope's items as the HTTP path stores them, packed into queue-message texts."""
    return pack_items(envelope, [encode_item(stored_form(item)) for item in envelope.items], limit)


def body_of(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


# --- validation handshake -------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "Validation: Testing client application reachability for subscription Request-Id: 8f6b3c1e",
        "a+b+c",
        "100%",
        "%2B is not decoded twice",
        "with spaces in it",
        "one&two=three",
        "path/with/slashes/",
        "jeton-été-日本語-🙂",
    ],
    ids=["graph-style", "plus", "percent", "percent-escape", "spaces", "ampersand", "slash", "non-ascii"],
)
def test_handshake_echoes_the_token_unchanged_as_plain_text(token):
    reply = answer_handshake({"validationToken": token})

    assert reply is not None
    assert reply.status == 200
    assert reply.mimetype == "text/plain"
    assert reply.body == token


def test_handshake_echoes_the_url_decoded_token_not_the_encoded_one():
    params = dict(parse_qsl("validationToken=a%2Bb%20c%26d%2Fe%25f&code=function-key"))

    reply = answer_handshake(params)

    assert reply is not None
    assert reply.body == "a+b c&d/e%f"


@pytest.mark.parametrize("key", ["validationtoken", "VALIDATIONTOKEN", "ValidationToken"])
def test_handshake_parameter_name_is_case_insensitive_for_sharepoint(key):
    reply = answer_handshake({"code": "function-key", key: "sp-token"})

    assert reply is not None
    assert (reply.status, reply.body) == (200, "sp-token")


@pytest.mark.parametrize("token", ["<html><script>alert(1)</script></html>", ""], ids=["html", "empty"])
def test_handshake_answers_tell_browsers_not_to_sniff_the_echoed_token(token):
    reply = answer_handshake({"validationToken": token})

    assert reply is not None
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_handshake_with_an_empty_token_is_rejected_with_400():
    reply = answer_handshake({"validationToken": ""})

    assert reply is not None
    assert reply.status == 400


def test_a_request_without_validation_token_is_not_a_handshake():
    assert answer_handshake({"code": "function-key"}) is None
    assert handshake_token({}) is None


# --- parse_batch ----------------------------------------------------------------------------


def test_parse_batch_returns_the_items_of_a_graph_batch(payload):
    document = payload("drive-notification-batch.json")

    items = parse_batch(body_of(document))

    assert items == document["value"]


@pytest.mark.parametrize("name", LIFECYCLE_PAYLOADS)
def test_parse_batch_accepts_graph_lifecycle_payloads(payload, name):
    document = payload(name)

    assert parse_batch(body_of(document)) == document["value"]


def test_parse_batch_rejects_malformed_json():
    with pytest.raises(MalformedBodyError) as caught:
        parse_batch(b'{"value": [')
    assert caught.value.status == 400


def test_parse_batch_rejects_an_empty_body():
    with pytest.raises(MalformedBodyError):
        parse_batch(b"  \r\n")


@pytest.mark.parametrize("body", [b"[]", b'"value"', b"42", b"null"], ids=["list", "string", "number", "null"])
def test_parse_batch_rejects_a_body_that_is_not_an_object(body):
    with pytest.raises(MalformedBodyError):
        parse_batch(body)


@pytest.mark.parametrize(
    "document",
    [{}, {"values": []}, {"value": {"subscriptionId": "x"}}, {"value": "[]"}, {"value": None}],
    ids=["no-value", "misspelt", "object", "string", "null"],
)
def test_parse_batch_rejects_a_body_without_a_value_list(document):
    with pytest.raises(MalformedBodyError):
        parse_batch(body_of(document))


def test_parse_batch_rejects_an_empty_value_list():
    with pytest.raises(MalformedBodyError):
        parse_batch(b'{"value": []}')


def test_parse_batch_rejects_a_non_object_item(make_item):
    with pytest.raises(MalformedBodyError):
        parse_batch(body_of({"value": [make_item(), "not-an-object"]}))


def test_parse_batch_rejects_a_body_over_one_mebibyte_with_413(make_item):
    body = body_of({"value": [make_item()]})
    body += b" " * (MAX_BODY_BYTES + 1 - len(body))

    with pytest.raises(BodyTooLargeError) as caught:
        parse_batch(body)
    assert caught.value.status == 413


def test_parse_batch_accepts_a_body_of_exactly_one_mebibyte(make_item):
    body = body_of({"value": [make_item()]})
    body += b" " * (MAX_BODY_BYTES - len(body))

    assert len(parse_batch(body)) == 1


def test_parse_batch_accepts_a_batch_of_max_items(make_item):
    assert len(parse_batch(body_of({"value": [make_item()] * MAX_ITEMS_PER_BATCH}))) == MAX_ITEMS_PER_BATCH


def test_parse_batch_rejects_more_than_max_items_with_413_naming_the_limit():
    # Well under 1 MiB: the count alone is refused, before any item is looked at.
    body = body_of({"value": [{}] * (MAX_ITEMS_PER_BATCH + 1)})
    assert len(body) < MAX_BODY_BYTES

    with pytest.raises(BodyTooLargeError) as caught:
        parse_batch(body)
    assert caught.value.status == 413
    assert str(MAX_ITEMS_PER_BATCH) in str(caught.value)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_parse_batch_rejects_non_json_constants_with_400(make_item, constant):
    body = body_of({"value": [make_item(size=0)]}).replace(b'"size": 0', b'"size": ' + constant)

    with pytest.raises(MalformedBodyError) as caught:
        parse_batch(body)
    assert caught.value.status == 400


def test_parse_batch_rejects_deeply_nested_json_with_400():
    # Well under 1 MiB, but nested deeper than the JSON parser can recurse.
    body = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert len(body) < MAX_BODY_BYTES

    with pytest.raises(MalformedBodyError) as caught:
        parse_batch(body)
    assert caught.value.status == 400


def test_parse_batch_rejects_invalid_utf8_with_400():
    with pytest.raises(MalformedBodyError) as caught:
        parse_batch(b'{"value": [{"subscriptionId": "\xff\xfe"}]}')
    assert caught.value.status == 400


# --- check_items ----------------------------------------------------------------------------


def test_check_items_accepts_a_valid_item_without_its_client_state(make_item):
    item = make_item()

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert verdict.rejected == []
    expected = {key: value for key, value in item.items() if key != "clientState"}
    assert verdict.accepted == [expected]


def test_check_items_accepts_every_item_of_the_sample_batch(payload):
    items = payload("drive-notification-batch.json")["value"]

    verdict = check_items(items, SECRETS.get, lifecycle=False)

    assert [i["subscriptionId"] for i in verdict.accepted] == [i["subscriptionId"] for i in items]
    assert all("clientState" not in item for item in verdict.accepted)


def test_check_items_rejects_a_wrong_client_state(make_item):
    verdict = check_items([make_item(clientState="guessed")], SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert [r.reason for r in verdict.rejected] == ["clientState mismatch"]


def test_check_items_rejects_a_missing_client_state(make_item):
    item = make_item()
    del item["clientState"]

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert [r.reason for r in verdict.rejected] == ["clientState mismatch"]


def test_check_items_rejects_a_client_state_that_is_only_a_prefix(make_item):
    verdict = check_items([make_item(clientState="secretClient")], SECRETS.get, lifecycle=False)

    assert [r.reason for r in verdict.rejected] == ["clientState mismatch"]


def test_check_items_rejects_a_client_state_that_is_not_valid_unicode():
    # "\ud800" is a valid JSON escape but a lone surrogate, which has no UTF-8 form.
    items = parse_batch(
        b'{"value": [{"subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727",'
        b' "changeType": "updated", "clientState": "\\ud800"}]}'
    )

    verdict = check_items(items, SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert [r.reason for r in verdict.rejected] == ["clientState mismatch"]


@pytest.mark.parametrize(
    "where",
    ["value", "key", "nested"],
)
def test_check_items_rejects_an_item_holding_text_that_is_not_valid_unicode(where):
    # "\ud800" is a valid JSON escape but a lone surrogate: no queue message can hold it in UTF-8.
    poisoned = {
        "value": b'"resource": "drives/\\ud800/root"',
        "key": b'"resource": "drives/x/root", "\\udfff": 1',
        "nested": b'"resource": "drives/x/root", "resourceData": {"id": ["\\ud800"]}',
    }[where]
    head = b'{"subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727", "changeType": "updated", '
    body = b'{"value": [' + head + poisoned + b', "clientState": "secretClientValue"}, '
    body += head + b'"resource": "drives/ok/root", "clientState": "secretClientValue"}]}'

    verdict = check_items(parse_batch(body), SECRETS.get, lifecycle=False)

    assert [(r.index, r.reason) for r in verdict.rejected] == [(0, "text not valid Unicode")]
    assert [i["resource"] for i in verdict.accepted] == ["drives/ok/root"]


def test_check_items_rejects_an_item_nested_too_deeply_to_store(make_item):
    nested: object = "bottom"
    for _ in range(100_000):  # deeper than any JSON encoder recurses
        nested = [nested]

    verdict = check_items([make_item(resourceData=nested), make_item()], SECRETS.get, lifecycle=False)

    assert [(r.index, r.reason) for r in verdict.rejected] == [(0, "not storable as JSON")]
    assert len(verdict.accepted) == 1


def test_check_items_rejects_an_unknown_subscription(make_item):
    item = make_item(subscriptionId="00000000-0000-0000-0000-000000000000")

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert [(r.subscription_id, r.reason) for r in verdict.rejected] == [
        ("00000000-0000-0000-0000-000000000000", "unknown subscription")
    ]


@pytest.mark.parametrize(
    "value", [None, "", 42, ["a"], {"id": "a"}], ids=["absent", "empty", "number", "list", "object"]
)
def test_check_items_rejects_an_item_without_subscription_id(make_item, value):
    item = make_item(subscriptionId=value)
    if value is None:
        del item["subscriptionId"]

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert [(r.subscription_id, r.reason) for r in verdict.rejected] == [("", "no subscriptionId")]


def test_check_items_keeps_a_change_notification_without_change_type_as_updated(make_item):
    item = make_item()
    del item["changeType"]

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert verdict.rejected == []
    assert [i["changeType"] for i in verdict.accepted] == ["updated"]


@pytest.mark.parametrize(
    "name",
    # OneDrive's documented example (onedrive-api-docs, docs/rest-api/concepts/using-webhooks.md) and
    # SharePoint's (sp-dev-docs, docs/apis/webhooks/overview-sharepoint-webhooks.md): neither has a changeType.
    ["onedrive-notification-batch.json", "sharepoint-notification-batch.json"],
    ids=["onedrive", "sharepoint"],
)
def test_check_items_keeps_microsofts_documented_notifications_without_change_type(payload, name):
    [item] = payload(name)["value"]
    secrets = {item["subscriptionId"]: item["clientState"]}

    verdict = check_items(parse_batch(body_of(payload(name))), secrets.get, lifecycle=False)

    assert verdict.rejected == []
    assert verdict.accepted == [{**{k: v for k, v in item.items() if k != "clientState"}, "changeType": "updated"}]


@pytest.mark.parametrize("value", [42, ["updated"], {"type": "updated"}], ids=["number", "list", "object"])
def test_check_items_rejects_a_change_type_that_is_not_a_string(make_item, value):
    verdict = check_items([make_item(changeType=value)], SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert [r.reason for r in verdict.rejected] == ["no changeType"]


@pytest.mark.parametrize("lifecycle", [True, False], ids=["lifecycle-endpoint", "notification-endpoint"])
@pytest.mark.parametrize(
    "value", [["missed"], {"event": "missed"}, [], {}, 42, True], ids=["list", "object", "[]", "{}", "number", "bool"]
)
def test_check_items_rejects_a_lifecycle_event_that_is_not_a_string(payload, value, lifecycle):
    # A list or an object is unhashable: it must be rejected, not raise TypeError (a 500).
    good = payload("lifecycle-missed.json")["value"][0]
    items = [good | {"lifecycleEvent": value}, good]

    verdict = check_items(items, SECRETS.get, lifecycle=lifecycle)

    assert [(r.index, r.reason) for r in verdict.rejected] == [(0, "unknown lifecycleEvent")]
    assert [i["lifecycleEvent"] for i in verdict.accepted] == ["missed"]


def test_check_items_rejects_an_unknown_lifecycle_event(payload):
    item = payload("lifecycle-missed.json")["value"][0] | {"lifecycleEvent": "subscriptionDeleted"}

    verdict = check_items([item], SECRETS.get, lifecycle=True)

    assert verdict.accepted == []
    assert [r.reason for r in verdict.rejected] == ["unknown lifecycleEvent"]


def test_check_items_rejects_an_unknown_lifecycle_event_on_the_notification_endpoint(make_item):
    verdict = check_items([make_item(lifecycleEvent="bogus")], SECRETS.get, lifecycle=False)

    assert [r.reason for r in verdict.rejected] == ["unknown lifecycleEvent"]


def test_check_items_on_the_lifecycle_endpoint_rejects_an_item_without_lifecycle_event(make_item):
    verdict = check_items([make_item()], SECRETS.get, lifecycle=True)

    assert [r.reason for r in verdict.rejected] == ["unknown lifecycleEvent"]


@pytest.mark.parametrize("name", LIFECYCLE_PAYLOADS)
def test_check_items_accepts_each_documented_lifecycle_event(payload, name):
    item = payload(name)["value"][0]

    verdict = check_items([item], SECRETS.get, lifecycle=True)

    assert verdict.rejected == []
    assert verdict.accepted == [{k: v for k, v in item.items() if k != "clientState"}]


def test_check_items_accepts_a_lifecycle_event_sent_to_the_notification_url(payload):
    # Graph allows lifecycleNotificationUrl to equal notificationUrl.
    item = payload("lifecycle-reauthorization-required.json")["value"][0]

    verdict = check_items([item], SECRETS.get, lifecycle=False)

    assert [i["lifecycleEvent"] for i in verdict.accepted] == ["reauthorizationRequired"]


def test_check_items_keeps_valid_items_of_a_mixed_batch_in_order(make_item):
    other = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    items = [
        make_item(resource="drives/one/root"),
        make_item(clientState="wrong"),
        make_item(subscriptionId=other, clientState=SECRETS[other], resource="drives/two/root"),
        make_item(subscriptionId="unknown-subscription"),
        {"changeType": "updated"},
        make_item(resource="drives/three/root"),
    ]

    verdict = check_items(items, SECRETS.get, lifecycle=False)

    assert [i["resource"] for i in verdict.accepted] == ["drives/one/root", "drives/two/root", "drives/three/root"]
    assert [(r.index, r.reason) for r in verdict.rejected] == [
        (1, "clientState mismatch"),
        (3, "unknown subscription"),
        (4, "no subscriptionId"),
    ]


def test_check_items_rejections_do_not_reveal_client_states(make_item):
    verdict = check_items([make_item(clientState="attacker-guess")], SECRETS.get, lifecycle=False)

    text = repr(verdict.rejected)
    assert "attacker-guess" not in text
    assert "secretClientValue" not in text


def test_check_items_compares_client_state_with_hmac_compare_digest(make_item, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(notifications.hmac, "compare_digest", spy)

    verdict = check_items([make_item(clientState="guess")], SECRETS.get, lifecycle=False)

    assert verdict.accepted == []
    assert len(calls) == 1
    assert {bytes(calls[0][0]), bytes(calls[0][1])} == {b"guess", b"secretClientValue"}


def test_check_items_matches_a_non_ascii_client_state(make_item):
    # hmac.compare_digest refuses non-ASCII str; the comparison must still work.
    secrets = {"aa269f87-2a92-4cff-a43e-2771878c3727": "clé-secrète-日本"}

    verdict = check_items([make_item(clientState="clé-secrète-日本")], secrets.get, lifecycle=False)

    assert len(verdict.accepted) == 1
    assert verdict.rejected == []


@pytest.mark.parametrize(
    "number", [b"1e999", b"-1e999", b"1E400", b"123456789e999"], ids=["1e999", "negative", "capital", "long"]
)
@pytest.mark.parametrize("where", ["top", "nested"])
def test_check_items_rejects_only_the_item_holding_a_number_out_of_range(make_item, number, where):
    # Valid JSON, but it parses to infinity, which JSON cannot write: the item alone is refused.
    good, bad = make_item(resource="drives/good/root"), make_item(size=0)
    if where == "nested":
        bad = make_item(resourceData={"id": "x", "sizes": [1, {"size": 0}]})
    body = body_of({"value": [good, bad]}).replace(b'"size": 0', b'"size": ' + number)

    verdict = check_items(parse_batch(body), SECRETS.get, lifecycle=False)

    assert [item["resource"] for item in verdict.accepted] == ["drives/good/root"]
    assert [(r.index, r.reason) for r in verdict.rejected] == [(1, "number out of range")]


def test_check_items_sets_aside_the_items_of_unchecked_subscriptions(make_item):
    unchecked_id = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    items = [make_item(), make_item(subscriptionId=unchecked_id), make_item(subscriptionId=unchecked_id, changeType=1)]

    verdict = check_items(items, SECRETS.get, lifecycle=False, unchecked={unchecked_id})

    assert [i["subscriptionId"] for i in verdict.accepted] == ["aa269f87-2a92-4cff-a43e-2771878c3727"]
    assert [(r.index, r.reason) for r in verdict.unchecked] == [(1, "subscription not checked")]
    assert [(r.index, r.reason) for r in verdict.rejected] == [(2, "no changeType")]  # malformed whatever its id


# --- Envelope -------------------------------------------------------------------------------


def test_envelope_round_trips_through_json(make_item):
    envelope = Envelope("notifications", RECEIVED, [make_item(), make_item(resource="drives/ü/root")], deferrals=3)

    assert Envelope.from_json(envelope.to_json()) == envelope
    assert Envelope.from_json(envelope.to_json().encode("utf-8")) == envelope


def test_an_envelope_written_again_carries_the_claims_of_its_redeemed_items(make_item):
    claim = {"subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727", "@graphhooks.claim": {"blob": "b"}}
    redeemed = ClaimedItem(make_item(resource="drives/large/root", padding="x" * 100_000), claim)
    plain = make_item()

    text = Envelope("notifications", RECEIVED, [plain, redeemed], deferrals=1).to_json()

    assert json.loads(text)["value"] == [plain, claim]
    assert split(Envelope("notifications", RECEIVED, [redeemed])) == [
        Envelope("notifications", RECEIVED, [claim]).to_json()
    ]


def test_envelope_keeps_received_at_in_utc():
    text = Envelope("lifecycle", RECEIVED, [{"subscriptionId": "s"}]).to_json()

    parsed = Envelope.from_json(text)

    assert parsed.received_at == RECEIVED
    assert parsed.received_at.utcoffset().total_seconds() == 0
    assert json.loads(text)["receivedAt"].endswith("Z")


def test_envelope_defaults_to_no_deferrals():
    text = json.dumps({"receivedAt": "2026-01-15T12:00:00Z", "value": []})

    assert Envelope.from_json(text).deferrals == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "null",
        '"text"',
        '{"value": []}',
        '{"receivedAt": "2026-01-15T12:00:00Z"}',
        '{"receivedAt": "yesterday", "value": []}',
        '{"receivedAt": "2026-01-15T12:00:00Z", "value": {}}',
        '{"receivedAt": "2026-01-15T12:00:00Z", "value": [1, 2]}',
        '{"receivedAt": 1768478400, "value": []}',
        '{"receivedAt": "2026-01-15T12:00:00Z", "value": [], "deferrals": "many"}',
        b'{"receivedAt": "2026-01-15T12:00:00Z", "value": [{"x": "\xff"}]}',
    ],
    ids=[
        "empty",
        "not-json",
        "list",
        "null",
        "string",
        "no-received-at",
        "no-value",
        "bad-time",
        "value-object",
        "value-scalars",
        "received-at-number",
        "deferrals-not-integer",
        "invalid-utf8",
    ],
)
def test_envelope_from_json_rejects_garbage_with_malformed_body_error(text):
    with pytest.raises(MalformedBodyError):
        Envelope.from_json(text)


# --- split_envelope -------------------------------------------------------------------------


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_split_envelope_keeps_a_small_envelope_in_one_message(make_item):
    envelope = Envelope("notifications", RECEIVED, [make_item()])

    assert split(envelope) == [envelope.to_json()]


def test_split_envelope_parts_fit_the_limit_and_keep_every_item_in_order(make_item):
    # Non-ASCII text makes bytes and characters differ: the limit is in UTF-8 bytes.
    items = [make_item(resource=f"drives/{n}/root", note="é日" * (50 + n % 400)) for n in range(400)]
    envelope = Envelope("notifications", RECEIVED, items, deferrals=2)

    parts = split(envelope)

    assert len(parts) > 1
    assert all(_utf8_size(part) <= MAX_MESSAGE_JSON_BYTES for part in parts)
    parsed = [Envelope.from_json(part) for part in parts]
    assert [item for part in parsed for item in part.items] == items
    assert all((p.source, p.received_at, p.deferrals) == ("notifications", RECEIVED, 2) for p in parsed)
    assert all(p.items for p in parsed)


def test_split_envelope_honours_a_custom_limit(make_item):
    items = [make_item(resource=f"drives/{n}/root") for n in range(30)]
    envelope = Envelope("notifications", RECEIVED, items)
    limit = 1500

    parts = split(envelope, limit)

    assert all(_utf8_size(part) <= limit for part in parts)
    assert [item for part in parts for item in Envelope.from_json(part).items] == items


def test_split_envelope_rejects_one_item_too_large_for_any_message(make_item):
    items = [make_item(), make_item(note="x" * MAX_MESSAGE_JSON_BYTES), make_item()]

    with pytest.raises(BodyTooLargeError) as caught:
        split(Envelope("notifications", RECEIVED, items))
    assert caught.value.status == 413


def test_split_envelope_sends_an_item_that_exactly_fills_a_message_on_its_own(make_item):
    limit = 2000
    small = make_item(resource="drives/small/root")
    big = make_item(resource="drives/big/root", note="")
    alone = Envelope("notifications", RECEIVED, [big]).to_json()
    big["note"] = "x" * (limit - _utf8_size(alone))
    assert _utf8_size(Envelope("notifications", RECEIVED, [big]).to_json()) == limit

    parts = split(Envelope("notifications", RECEIVED, [small, big]), limit)

    assert [Envelope.from_json(part).items for part in parts] == [[small], [big]]
    assert all(_utf8_size(part) <= limit for part in parts)
