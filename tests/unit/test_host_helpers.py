"""Pure helpers of the local host (devtools/host): TimeSpan, schedules, queries, routes, back-off."""

from __future__ import annotations

import base64
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.host.listener import poison_queue_name
from devtools.host.queues import (
    Backoff,
    MessageDecodeError,
    decode_message,
    encode_message,
    visibility_seconds,
)
from devtools.host.routing import compile_route, parse_query
from devtools.host.settings import (
    DEV_CONNECTION_STRING,
    HostConfigError,
    load_host_json,
    load_local_settings,
    parse_timespan,
    resolve_setting_refs,
    storage_connection_string,
)
from devtools.host.timers import parse_schedule

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:02", timedelta(seconds=2)),
        ("00:00:00.500", timedelta(milliseconds=500)),
        ("00:00:00.2", timedelta(milliseconds=200)),
        ("00:01:00", timedelta(minutes=1)),
        ("1.02:03:04", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("01:30", timedelta(hours=1, minutes=30)),
    ],
)
def test_parse_timespan(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize("text", ["", "2s", "00:00:xx", "1:2:3:4"])
def test_parse_timespan_rejects_other_text(text: str) -> None:
    with pytest.raises(HostConfigError):
        parse_timespan(text)


def test_ncrontab_has_seconds_first_in_utc() -> None:
    start = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    every_five_seconds = parse_schedule("*/5 * * * * *")
    assert every_five_seconds.next_after(start) == start + timedelta(seconds=5)
    weekday_nine = parse_schedule("0 0 9 * * Mon-Fri")  # 2024-01-01 is a Monday
    assert weekday_nine.next_after(start) == datetime(2024, 1, 1, 9, 0, 0, tzinfo=UTC)


def test_schedule_setting_reference_and_timespan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED", "0 */5 * * * *")
    start = datetime(2024, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert parse_schedule("%SCHED%").next_after(start) == datetime(2024, 1, 1, 0, 5, 0, tzinfo=UTC)
    assert parse_schedule("00:00:30").next_after(start) == start + timedelta(seconds=30)
    with pytest.raises(HostConfigError):
        parse_schedule("not a schedule")
    monkeypatch.delenv("SCHED")
    with pytest.raises(HostConfigError, match="SCHED"):
        parse_schedule("%SCHED%")


def test_query_decoding_follows_aspnet() -> None:
    query = "q=a+b&plus=%2B&sp=%20x&u=%C3%A9t%C3%A9&multi=1&Multi=2&empty=&flag&code=k"
    assert parse_query(query) == {"q": "a b", "plus": "+", "sp": " x", "u": "été", "multi": "1,2", "code": "k"}
    assert parse_query("") == {}


def test_route_parameters_optional_and_constraints() -> None:
    route = compile_route("items/{id:int}/{name?}")
    assert route.match("items/42/caf%C3%A9") == {"id": "42", "name": "café"}
    assert route.match("Items/42/") == {"id": "42"}
    assert route.match("items/abc") is None
    assert route.match("items/42/x/y") is None
    assert compile_route("files/{*path}").match("files/a/b%20c") == {"path": "a/b c"}
    assert compile_route("v/{n:range(1,3)}").match("v/4") is None
    assert compile_route("g/{id:guid}").match("g/0f8fad5b-d9cb-469f-a165-70867728950e") is not None


def test_literal_routes_win_over_parameters() -> None:
    routes = [compile_route("items/{id}"), compile_route("items/special"), compile_route("{*all}")]
    ordered = sorted(routes, key=lambda r: r.precedence())
    assert [r.template for r in ordered] == ["items/special", "items/{id}", "{*all}"]


def test_backoff_grows_to_the_maximum_and_resets() -> None:
    backoff = Backoff(timedelta(milliseconds=100), timedelta(seconds=1), random.Random(1))
    delays = [backoff.next_delay(False) for _ in range(10)]
    assert delays[0] == pytest.approx(0.1)
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(1.0)
    assert backoff.next_delay(True) == pytest.approx(0.1)


def test_message_encoding_round_trip_and_invalid_base64() -> None:
    wire = encode_message("héllo", "base64")
    assert base64.b64decode(wire) == "héllo".encode()
    assert decode_message(wire, "base64") == "héllo".encode()
    assert decode_message("plain", "none") == b"plain"
    with pytest.raises(MessageDecodeError):
        decode_message("not base64 at all!", "base64")


def test_visibility_is_whole_seconds() -> None:
    assert visibility_seconds(timedelta(milliseconds=200)) == 0
    assert visibility_seconds(timedelta(seconds=30, milliseconds=900)) == 30


def test_poison_queue_names() -> None:
    assert poison_queue_name("work") == "work-poison"
    assert poison_queue_name("work-poison") is None
    assert poison_queue_name("x" * 60) is None


def test_local_settings_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "local.settings.example.json").write_text(json.dumps({"Values": {"A": "file", "B": "file"}}))
    env = {"A": "env"}
    assert load_local_settings(tmp_path, env) == tmp_path / "local.settings.example.json"
    assert env == {"A": "env", "B": "file"}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"B": "real"}}))
    env = {}
    load_local_settings(tmp_path, env)
    assert env == {"B": "real"}


def test_connection_strings_and_setting_references() -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "Other": "AccountName=x", "Q": "jobs"}
    assert storage_connection_string(None, env) == DEV_CONNECTION_STRING
    assert storage_connection_string("Storage", env) == DEV_CONNECTION_STRING  # AzureWebJobs prefix
    assert storage_connection_string("Other", env) == "AccountName=x"
    assert resolve_setting_refs("%Q%-in", env) == "jobs-in"
    with pytest.raises(HostConfigError):
        storage_connection_string("Missing", env)


def test_host_json_queue_options(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {
                        "batchSize": 8,
                        "maxPollingInterval": "00:00:02",
                        "visibilityTimeout": "00:00:05",
                        "maxDequeueCount": 3,
                        "messageEncoding": "none",
                    },
                },
            }
        )
    )
    config = load_host_json(tmp_path)
    assert config.route_prefix == ""
    q = config.queues
    assert (q.batch_size, q.max_dequeue_count, q.message_encoding) == (8, 3, "none")
    assert q.max_polling_interval == timedelta(seconds=2)
    assert q.visibility_timeout == timedelta(seconds=5)
    assert q.threshold() == 4 * (os.cpu_count() or 1)
    defaults = load_host_json(tmp_path / "missing")
    assert (defaults.route_prefix, defaults.queues.batch_size, defaults.queues.max_dequeue_count) == ("api", 16, 5)


def test_message_hold_defaults_to_ten_minutes_and_can_be_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools.host.__main__ import HOLD_ENV, parse_args

    monkeypatch.delenv(HOLD_ENV, raising=False)
    assert parse_args([]).message_hold_seconds == 600
    monkeypatch.setenv(HOLD_ENV, "7")
    assert parse_args([]).message_hold_seconds == 7
    assert parse_args(["--message-hold-seconds", "3"]).message_hold_seconds == 3  # the flag wins
    with pytest.raises(SystemExit):
        parse_args(["--message-hold-seconds", "0"])


async def test_listener_holds_and_renews_a_running_message_for_the_given_seconds() -> None:
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from devtools.host.listener import QueueListener, _Lease
    from devtools.host.settings import QueueOptions

    class FakeQueue:
        queue_name = "q"
        url = "http://fake/q"

        def __init__(self) -> None:
            self.received: list[int] = []
            self.updated: list[int] = []

        async def create_queue(self) -> None:
            return None

        def receive_messages(self, **kwargs: Any) -> Any:
            self.received.append(kwargs["visibility_timeout"])

            async def empty() -> Any:
                for item in ():
                    yield item

            return empty()

        async def update_message(self, msg_id: str, pop_receipt: str | None, visibility_timeout: int) -> Any:
            self.updated.append(visibility_timeout)
            return SimpleNamespace(pop_receipt="next")

    class FakeClients:
        async def ensure(self, client: Any) -> None:
            return None

    queue = FakeQueue()
    spec: Any = SimpleNamespace(name="f")
    listener = QueueListener(spec, queue, None, FakeClients(), None, QueueOptions(), lease_seconds=2)  # type: ignore[arg-type]
    assert await listener._receive() == []
    assert queue.received == [2]
    lease = _Lease(queue, SimpleNamespace(id="m", pop_receipt="first"), 2)  # type: ignore[arg-type]
    task = asyncio.create_task(lease.keep_alive())
    await asyncio.sleep(1.3)  # one renewal at half the hold
    task.cancel()
    assert queue.updated == [2]
    assert lease.pop_receipt == "next"
