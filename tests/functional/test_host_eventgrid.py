"""The local host's Event Grid trigger webhook, `/runtime/webhooks/eventgrid?functionName=`, over real HTTP.

The host runs as a subprocess on a throwaway app in a tmp dir (eventgrid_support.RECORDING_APP)
whose one function writes what it was handed to a file.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.functional.eventgrid_support import LocalHost, records, start_host, stop_host, write_app

pytestmark = [pytest.mark.timeout(60)]

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "eventgrid"


@dataclass
class App:
    host: LocalHost
    record: Path
    fail: Path

    def post(
        self, body: Any, function: str = "record", headers: dict[str, str] | None = None, method: str = "POST"
    ) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "aeg-event-type": "Notification"} | (headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        url = self.host.webhook(function) if function is not None else self.host.url + "/runtime/webhooks/eventgrid"
        req = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("egapp")
    record, fail = root / "record.jsonl", root / "fail.txt"
    host = start_host(write_app(root / "app", record, fail), root)
    yield App(host, record, fail)
    stop_host(host)


def documented(name: str) -> Any:
    body = json.loads((PAYLOADS / name).read_text())
    body.pop("_source", None)
    return body["event"]


def test_each_event_binds_as_the_python_worker_binds_it(app: App) -> None:
    cloud = documented("user-updated.json")
    grid = {
        "id": "93902694-901e-008f-6f95-7153a806873c",
        "eventTime": "2020-08-13T17:18:13.1647262Z",
        "eventType": "Microsoft.Storage.BlobCreated",
        "dataVersion": "",
        "metadataVersion": "1",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z",
        "subject": "/blobServices/default/containers/c/blobs/b.txt",
        "data": {"api": "PutBlob"},
    }
    before = len(records(app.record))
    status, _, _ = app.post([cloud, grid])
    assert status == 202
    got = records(app.record)[before:]
    assert len(got) == 2
    by_class = {g["class"]: g for g in got}
    assert by_class["CloudEvent"]["type"] == "Microsoft.Graph.UserUpdated"
    assert by_class["CloudEvent"]["subject"] == cloud["subject"]
    assert by_class["CloudEvent"]["data"] == cloud["data"]
    assert by_class["CloudEvent"]["spec"] == "1.0"
    assert by_class["EventGridEvent"]["type"] == "Microsoft.Storage.BlobCreated"
    assert by_class["EventGridEvent"]["data"] == {"api": "PutBlob"}


def test_a_single_object_is_one_event(app: App) -> None:
    before = len(records(app.record))
    assert app.post(documented("drive-item-updated.json"))[0] == 202
    [got] = records(app.record)[before:]
    assert got["type"] == "Microsoft.Graph.DriveItemUpdated" and "changeType" not in got["data"]


def test_a_failing_invocation_answers_500_so_event_grid_redelivers(app: App) -> None:
    app.fail.write_text("1")
    before = len(records(app.record))
    status, _, body = app.post([documented("user-updated.json")])
    assert status == 500 and b"told to fail" in body
    assert app.post([documented("user-updated.json")])[0] == 202
    assert [r["failed"] for r in records(app.record)[before:]] == [True, False]


def test_one_failure_among_several_events_fails_the_request(app: App) -> None:
    app.fail.write_text("1")
    events = [documented("user-updated.json"), documented("group-deleted.json")]
    before = len(records(app.record))
    assert app.post(events)[0] == 500
    assert sorted(r["failed"] for r in records(app.record)[before:]) == [False, True]


def test_an_unknown_or_missing_function_name_is_404(app: App) -> None:
    status, _, body = app.post([documented("user-updated.json")], function="nope")
    assert status == 404 and body == b"cannot find function: 'nope'"
    assert app.post([documented("user-updated.json")], function=None)[0] == 404  # type: ignore[arg-type]


@pytest.mark.parametrize(("header", "expected"), [(None, 400), ("Bogus", 400), ("Unsubscribe", 202)])
def test_aeg_event_type_other_than_notification(app: App, header: str | None, expected: int) -> None:
    before = len(records(app.record))
    assert app.post([documented("user-updated.json")], headers={"aeg-event-type": header})[0] == expected  # type: ignore[dict-item]
    assert len(records(app.record)) == before


def test_subscription_validation_echoes_the_code(app: App) -> None:
    event = [
        {"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "C0DE"}}
    ]
    status, _, body = app.post(event, headers={"aeg-event-type": "SubscriptionValidation"})
    assert status == 200 and json.loads(body) == {"validationResponse": "C0DE"}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("eventgrid.azure.net", "eventgrid.azure.net"),
        ("eventgrid.azure.us", "eventgrid.azure.us"),
        ("evil.example", "eventgrid.azure.net"),
        (None, "eventgrid.azure.net"),
    ],
)
def test_cloudevents_abuse_protection_handshake(app: App, origin: str | None, allowed: str) -> None:
    headers = {"WebHook-Request-Origin": origin, "aeg-event-type": None}
    status, answer, _ = app.post(b"", headers=headers, method="OPTIONS")  # type: ignore[arg-type]
    assert status == 200 and answer["WebHook-Allowed-Origin"] == allowed


def test_a_body_that_is_not_an_object_or_array_fails_and_runs_nothing(app: App) -> None:
    before = len(records(app.record))
    assert app.post(b"not json")[0] == 500
    assert app.post(b"42")[0] == 500
    assert len(records(app.record)) == before


def test_the_banner_names_the_webhook(app: App) -> None:
    out = Path(str(app.host.stderr).replace(".err", ".out")).read_text()
    assert f"record: eventGridTrigger (POST {app.host.webhook('record')})" in out


def test_the_key_is_required_when_keys_are_enforced(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    host = start_host(write_app(tmp_path / "app", record), tmp_path, ["--enforce-keys", "k3y"])
    try:
        keyed = App(host, record, tmp_path / "none")
        assert keyed.post([documented("user-updated.json")])[0] == 401
        assert keyed.post([documented("user-updated.json")], function="record&code=k3y")[0] == 202
        assert keyed.post([documented("user-updated.json")], headers={"x-functions-key": "k3y"})[0] == 202
        assert len(records(record)) == 2
    finally:
        stop_host(host)
