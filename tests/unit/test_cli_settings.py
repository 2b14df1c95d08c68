"""The admin CLI's pure parts: settings sources and checks, desired entries, the merge the renew timer uses,
taps, the spinner."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from graphhooks import localstack, runtime
from graphhooks.desired import validated
from graphhooks.runtime import Session, read_values
from shared.errors import InvalidSettingError, OperatorRequestError
from shared.model.resources import DesiredSubscription
from shared.stores.desired import merge_desired
from shared.stores.taps import Tap, alive

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_the_environment_wins_over_local_settings(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage": "from-file", "GRAPH_TENANT_ID": "t"}}))
    values = read_values(path, {"AzureWebJobsStorage": "from-env"})
    assert values["AzureWebJobsStorage"] == "from-env"
    assert values["GRAPH_TENANT_ID"] == "t"


def test_a_named_settings_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(OperatorRequestError, match="cannot read"):
        read_values(tmp_path / "absent.json", {})


def test_a_settings_file_without_values_is_an_error(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False}))
    with pytest.raises(OperatorRequestError, match="Values"):
        read_values(path, {})


def test_the_table_entry_replaces_the_seed_entry_with_the_same_key():
    seed = (DesiredSubscription("drives/a/root", "updated"), DesiredSubscription("users", "updated"))
    table = (DesiredSubscription("users", "updated", for_each_member_of=None), DesiredSubscription("groups", "deleted"))
    rich = DesiredSubscription("drives/a/root", "updated", include_resource_data=True)
    merged = merge_desired(seed, (*table, rich))
    assert [d.key for d in merged] == ["drives:a:root|updated", "users|updated", "groups|deleted"]
    assert merged[0] is rich


def test_desired_add_accepts_what_the_setting_accepts():
    item = validated("/drives/b!x/root/", "updated", False, None, {})
    assert item == DesiredSubscription("drives/b!x/root", "updated")


def test_desired_add_refuses_a_resource_no_source_reads():
    with pytest.raises(OperatorRequestError, match="no change source reads it"):
        validated("drives/x/items/y", "updated", False, None, {})


def test_desired_add_refuses_a_change_type_graph_refuses():
    with pytest.raises(OperatorRequestError, match="changeType 'created' is refused"):
        validated("drives/x/root", "created", False, None, {})


def test_desired_add_refuses_resource_data_without_a_certificate():
    with pytest.raises(OperatorRequestError, match="NOTIFICATION_CERTIFICATE"):
        validated("users/u/messages", "created", True, None, {})


def test_only_taps_that_have_not_lapsed_get_copies():
    taps = [
        Tap("tap-live", NOW + timedelta(seconds=1)),
        Tap("tap-lapsed", NOW),
        Tap("graph-changes", NOW + timedelta(minutes=1)),  # never a consumer's queue
    ]
    assert alive(taps, NOW) == ["tap-live"]


# Where the settings come from when nothing is named: ./local.settings.json, else the running `make run`.


def _stack_file(directory: Path, pid: int, values: dict[str, str]) -> Path:
    path = directory / ".run" / "local.settings.json"
    localstack.write(path, values, {"pid": pid})
    return path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_running_local_stack_settings_are_read_when_there_is_no_local_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _stack_file(tmp_path, os.getpid(), {"AzureWebJobsStorage": "from-the-stack"})
    assert read_values(None, {})["AzureWebJobsStorage"] == "from-the-stack"
    assert (tmp_path / ".run" / "local.settings.json").stat().st_mode & 0o777 == 0o600


def test_local_settings_win_over_the_running_stack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _stack_file(tmp_path, os.getpid(), {"AzureWebJobsStorage": "from-the-stack"})
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"AzureWebJobsStorage": "from-file"}}))
    assert read_values(None, {})["AzureWebJobsStorage"] == "from-file"


def test_the_settings_of_a_stack_that_stopped_are_not_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _stack_file(tmp_path, _dead_pid(), {"AzureWebJobsStorage": "stale"})
    assert "AzureWebJobsStorage" not in read_values(None, {})


def test_a_missing_storage_setting_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("AzureWebJobsStorage")]:
        monkeypatch.delenv(key)
    with pytest.raises(OperatorRequestError) as caught:
        _ = Session().connection
    message = str(caught.value)
    assert message.startswith("missing setting AzureWebJobsStorage: ")
    for advice in ("make run", ".run/local.settings.json", "local.settings.example.json", "--settings PATH"):
        assert advice in message
    assert "\n" not in message


# Storage settings the SDKs would refuse with a ValueError (a traceback before) name the setting.


def _session(tmp_path: Path, values: dict[str, str]) -> Session:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": values}))
    return Session(path)


def test_a_malformed_connection_string_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    with pytest.raises(InvalidSettingError) as caught:
        _ = _session(tmp_path, {"AzureWebJobsStorage": "AccountName=x;not a connection string"}).connection
    assert caught.value.key == "AzureWebJobsStorage"
    assert "not a storage connection string" in str(caught.value)


def test_an_identity_based_endpoint_without_https_names_its_setting(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("AzureWebJobsStorage")]:
        monkeypatch.delenv(key)
    values = {
        "AzureWebJobsStorage__queueServiceUri": "http://127.0.0.1:10001/devstoreaccount1",
        "AzureWebJobsStorage__tableServiceUri": "https://example.table.core.windows.net",
    }
    with pytest.raises(InvalidSettingError) as caught:
        _ = _session(tmp_path, values).connection
    assert caught.value.key == "AzureWebJobsStorage__queueServiceUri"


# A command that waits more than a second shows a spinner on a terminal, and nothing otherwise.


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    screen = io.StringIO()
    monkeypatch.setattr(runtime, "errors", Console(file=screen, force_terminal=True, width=100))
    return screen


def test_a_wait_of_more_than_a_second_shows_a_spinner(terminal):
    assert runtime.run(_after(1.6, "done"), "counting the poison queues") == "done"
    assert "counting the poison queues" in terminal.getvalue()


def test_a_quick_command_shows_no_spinner(terminal):
    assert runtime.run(_after(0.05, "done"), "counting the poison queues") == "done"
    assert terminal.getvalue() == ""


async def _after(seconds: float, value: str) -> str:
    await asyncio.sleep(seconds)
    return value
