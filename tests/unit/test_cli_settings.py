"""The admin CLI's pure parts: settings sources, desired entries, the merge the renew timer uses, taps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from graphhooks.desired import validated
from graphhooks.runtime import read_values
from shared.errors import OperatorRequestError
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
