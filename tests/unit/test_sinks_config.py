"""SINKS parsing: what each entry becomes, and one test per reason an entry is refused."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from shared.config.sinks import parse_sinks, sink_queues
from shared.errors import InvalidSettingError
from shared.model.sinks import TeamsSink, WebhookSink

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def parse(*entries: Any, **environ: str) -> Any:
    return parse_sinks({"SINKS": json.dumps(list(entries)), **environ})


def refused(*entries: Any, **environ: str) -> str:
    with pytest.raises(InvalidSettingError) as info:
        parse(*entries, **environ)
    assert info.value.key == "SINKS"
    return str(info.value)


def test_absent_setting_means_no_sinks() -> None:
    assert parse_sinks({}) == ()


def test_webhook_entry_with_defaults_and_named_queues() -> None:
    (hook, teams) = parse(
        {"type": "webhook", "url": "https://example.org/hook", "secret": SECRET},
        {"type": "teams", "url": "https://example.org/wf", "name": "team-cards", "windowSeconds": 60},
    )
    assert isinstance(hook, WebhookSink) and isinstance(teams, TeamsSink)
    assert (hook.delivery.queue, hook.delivery.poison_queue) == ("sink-0-webhook", "sink-0-webhook-poison")
    assert (hook.concurrency, hook.rate_per_second, hook.delivery.max_attempts) == (8, None, None)
    assert hook.delivery.policy.horizon == timedelta(hours=24)  # an outage of hours is waited out
    assert (teams.delivery.queue, teams.window_seconds) == ("team-cards", 60.0)


def test_secret_from_a_named_setting_and_never_in_repr() -> None:
    (hook,) = parse({"type": "webhook", "url": "https://e.org/h", "secretSetting": "HOOK_SECRET"}, HOOK_SECRET=SECRET)
    assert hook.secret == SECRET
    assert SECRET not in repr(hook)


def test_plain_http_allowed_on_loopback() -> None:
    (hook,) = parse({"type": "webhook", "url": "http://127.0.0.1:8080/h", "secret": SECRET})
    assert hook.url == "http://127.0.0.1:8080/h"


def test_sink_queues_lists_the_queue_names() -> None:
    environ = {"SINKS": json.dumps([{"type": "teams", "url": "https://e.org/w"}])}
    assert sink_queues(environ) == ("sink-0-teams",)


def test_refuses_non_json() -> None:
    with pytest.raises(InvalidSettingError, match="not JSON"):
        parse_sinks({"SINKS": "[{"})


def test_refuses_non_list() -> None:
    with pytest.raises(InvalidSettingError, match="JSON list"):
        parse_sinks({"SINKS": "{}"})


def test_refuses_entry_that_is_not_an_object() -> None:
    assert "entry 0: is not an object" in refused("webhook")


def test_refuses_unknown_type() -> None:
    assert "entry 0: unknown type 'email'" in refused({"type": "email", "url": "https://e.org"})


def test_refuses_plain_http_off_loopback() -> None:
    assert "must be https" in refused({"type": "webhook", "url": "http://example.org/h", "secret": SECRET})


def test_refuses_missing_url() -> None:
    assert "entry 1: needs a url" in refused({"type": "teams", "url": "https://e.org/w"}, {"type": "teams"})


def test_refuses_relative_url() -> None:
    assert "absolute http(s) URL" in refused({"type": "teams", "url": "/hook"})


def test_refuses_missing_secret() -> None:
    assert "needs a secret" in refused({"type": "webhook", "url": "https://e.org/h"})


def test_refuses_malformed_secret_without_echoing_it() -> None:
    message = refused({"type": "webhook", "url": "https://e.org/h", "secret": "hunter2-not-whsec"})
    assert "whsec_" in message and "hunter2" not in message


def test_refuses_secret_setting_that_is_empty() -> None:
    assert "HOOK_SECRET, which is empty" in refused(
        {"type": "webhook", "url": "https://e.org/h", "secretSetting": "HOOK_SECRET"}
    )


def test_refuses_both_secret_and_secret_setting() -> None:
    entry = {"type": "webhook", "url": "https://e.org/h", "secret": SECRET, "secretSetting": "X"}
    assert "not both" in refused(entry, X=SECRET)


def test_refuses_bad_queue_name() -> None:
    assert "name must be a queue name" in refused({"type": "teams", "url": "https://e.org/w", "name": "Cards_1"})


def test_refuses_two_sinks_on_one_queue() -> None:
    entry = {"type": "teams", "url": "https://e.org/w", "name": "cards"}
    assert "two sinks use the queue 'cards'" in refused(entry, entry)


def test_refuses_bad_concurrency() -> None:
    assert "concurrency must be a whole number" in refused(
        {"type": "webhook", "url": "https://e.org/h", "secret": SECRET, "concurrency": 0}
    )


def test_refuses_bad_rate() -> None:
    assert "ratePerSecond must be a positive number" in refused(
        {"type": "webhook", "url": "https://e.org/h", "secret": SECRET, "ratePerSecond": "fast"}
    )


def test_retry_horizon_and_attempt_cap_are_settings() -> None:
    (hook,) = parse({"type": "webhook", "url": "https://e.org/h", "secret": SECRET, "retryHours": 2, "maxAttempts": 40})
    assert hook.delivery.policy.horizon == timedelta(hours=2)
    assert hook.delivery.policy.max_attempts == 40


@pytest.mark.parametrize("hours", [0, -1, "day", True])
def test_refuses_a_retry_horizon_that_is_not_a_positive_number(hours: Any) -> None:
    assert "retryHours must be a positive number" in refused(
        {"type": "teams", "url": "https://e.org/w", "retryHours": hours}
    )


def test_refuses_a_retry_horizon_over_a_week() -> None:
    assert "retryHours is at most 168" in refused({"type": "teams", "url": "https://e.org/w", "retryHours": 169})


def test_refuses_teams_window_over_two_minutes() -> None:
    assert "windowSeconds is at most 120" in refused({"type": "teams", "url": "https://e.org/w", "windowSeconds": 300})


def test_blob_entry_uses_the_app_storage_by_default() -> None:
    connection = "AccountName=a;AccountKey=c2VjcmV0"
    (mirror,) = parse({"type": "blob", "container": "mirror", "onDelete": "move"}, AzureWebJobsStorage=connection)
    assert (mirror.container, mirror.connection.connection_string, mirror.keep_deleted) == ("mirror", connection, True)
    assert "AccountKey" not in repr(mirror)


def test_blob_entry_takes_the_identity_based_form_of_its_setting() -> None:
    (mirror,) = parse(
        {"type": "blob", "container": "mirror", "connection": "MIRROR"},
        MIRROR__accountName="mirrorfiles",
        MIRROR__credential="managedidentity",
    )
    assert mirror.connection.identity_based
    assert mirror.connection.blob_service_uri == "https://mirrorfiles.blob.core.windows.net"
    assert mirror.connection.credential == "managedidentity"


def test_refuses_identity_based_blob_connection_without_a_blob_endpoint() -> None:
    reason = refused(
        {"type": "blob", "container": "mirror"},
        AzureWebJobsStorage__queueServiceUri="https://a.queue.core.windows.net",
        AzureWebJobsStorage__tableServiceUri="https://a.table.core.windows.net",
    )
    assert "AzureWebJobsStorage__blobServiceUri" in reason


def test_refuses_blob_without_container() -> None:
    assert "needs a container" in refused({"type": "blob"}, AzureWebJobsStorage="conn")


def test_refuses_blob_connection_naming_an_empty_setting() -> None:
    assert "OTHER_STORAGE, which is empty" in refused(
        {"type": "blob", "container": "mirror", "connection": "OTHER_STORAGE"}
    )


def test_refuses_unknown_on_delete() -> None:
    entry = {"type": "blob", "container": "mirror", "onDelete": "archive"}
    assert "onDelete must be" in refused(entry, AzureWebJobsStorage="conn")


def test_refuses_more_sinks_than_triggers() -> None:
    assert "at most 8" in refused(
        *[{"type": "teams", "url": "https://e.org/w", "name": f"cards-{i}"} for i in range(9)]
    )


def test_a_webhook_sends_native_events_unless_its_entry_names_a_cloudevents_mode() -> None:
    plain, binary, structured = parse(
        {"type": "webhook", "url": "https://example.org/a", "secret": SECRET},
        {"type": "webhook", "url": "https://example.org/b", "secret": SECRET, "cloudevents": "binary"},
        {"type": "webhook", "url": "https://example.org/c", "secret": SECRET, "cloudevents": "structured"},
    )
    assert (plain.cloudevents, binary.cloudevents, structured.cloudevents) == (None, "binary", "structured")


@pytest.mark.parametrize("mode", ["batch", "Binary", True, ""])
def test_refuses_an_unknown_cloudevents_mode(mode: Any) -> None:
    entry = {"type": "webhook", "url": "https://example.org/a", "secret": SECRET, "cloudevents": mode}
    assert "entry 0: cloudevents must be 'binary' or 'structured'" in refused(entry)
