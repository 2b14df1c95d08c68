"""Settings.from_env: what an operator sees when a setting is missing, wrong or left to its default."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.config.settings import DEFAULT_GRAPH_BASE_URL, DEFAULT_RENEW_SCHEDULE, Settings
from shared.config.subscriptions import parse_desired
from shared.errors import InvalidSettingError, MissingSettingError
from shared.model.resources import DesiredSubscription, resource_key

REQUIRED = [
    "AzureWebJobsStorage",
    "GRAPH_TENANT_ID",
    "GRAPH_CLIENT_ID",
    "NOTIFICATION_URL",
    "LIFECYCLE_NOTIFICATION_URL",
]


def test_a_complete_environment_is_read(make_env):
    environ = make_env()

    settings = Settings.from_env(environ)

    assert settings.storage_connection.connection_string == environ["AzureWebJobsStorage"]
    assert settings.tenant_id == environ["GRAPH_TENANT_ID"]
    assert settings.client_id == environ["GRAPH_CLIENT_ID"]
    assert settings.client_secret == environ["GRAPH_CLIENT_SECRET"]
    assert settings.notification_url == environ["NOTIFICATION_URL"]
    assert settings.lifecycle_notification_url == environ["LIFECYCLE_NOTIFICATION_URL"]
    assert [s.resource for s in settings.subscriptions] == ["drives/b!dGVzdC1kcml2ZS1vbmU/root"]


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_required_setting_is_named(make_env, key):
    with pytest.raises(MissingSettingError) as caught:
        Settings.from_env(make_env(**{key: None}))

    assert caught.value.key == key
    assert key in str(caught.value)


@pytest.mark.parametrize("key", REQUIRED)
def test_a_blank_required_setting_counts_as_missing(make_env, key):
    with pytest.raises(MissingSettingError) as caught:
        Settings.from_env(make_env(**{key: "   "}))

    assert caught.value.key == key


def test_the_client_secret_is_optional(make_env):
    assert Settings.from_env(make_env(GRAPH_CLIENT_SECRET=None)).client_secret is None


@pytest.mark.parametrize("key", ["NOTIFICATION_URL", "LIFECYCLE_NOTIFICATION_URL", "GRAPH_BASE_URL"])
@pytest.mark.parametrize("value", ["webhooks.example.com/api/notifications", "ftp://example.com/x", "https://"])
def test_a_url_setting_must_be_an_absolute_http_url(make_env, key, value):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(**{key: value}))

    assert caught.value.key == key


# --- GRAPH_SUBSCRIPTIONS --------------------------------------------------------------------


def test_graph_subscriptions_that_is_not_json_is_named(make_env):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS="[{resource: drives/x/root}]"))

    assert caught.value.key == "GRAPH_SUBSCRIPTIONS"


@pytest.mark.parametrize("text", ['{"resource": "drives/x/root"}', '"drives/x/root"', "42"])
def test_graph_subscriptions_must_be_a_list(make_env, text):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=text))

    assert caught.value.key == "GRAPH_SUBSCRIPTIONS"


@pytest.mark.parametrize(
    "entry",
    [{}, {"changeType": "updated"}, {"resource": ""}, {"resource": " / "}, {"resource": 7}],
    ids=["empty", "change-type-only", "empty-resource", "slash-only", "not-a-string"],
)
def test_graph_subscriptions_entry_without_resource_is_rejected(make_env, entry):
    text = json.dumps([{"resource": "drives/ok/root"}, entry])

    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=text))

    assert caught.value.key == "GRAPH_SUBSCRIPTIONS"
    assert "entry 1" in str(caught.value)


def test_graph_subscriptions_entry_that_is_not_an_object_is_rejected():
    with pytest.raises(InvalidSettingError):
        parse_desired('["drives/x/root"]')


def test_graph_subscriptions_entry_with_an_empty_change_type_is_rejected():
    with pytest.raises(InvalidSettingError):
        parse_desired('[{"resource": "drives/x/root", "changeType": ""}]')


def test_graph_subscriptions_change_type_defaults_to_updated():
    assert parse_desired('[{"resource": "drives/x/root"}]') == (DesiredSubscription("drives/x/root", "updated"),)


@pytest.mark.parametrize(
    "resource",
    ["drives/b!x/root", "users/u1/drive/root", "groups/g1/drive/root", "sites/contoso.sharepoint.com,1,2/drive/root"],
)
def test_graph_subscriptions_accepts_every_readable_drive_root(resource):
    assert parse_desired(json.dumps([{"resource": resource}])) == (DesiredSubscription(resource, "updated"),)


@pytest.mark.parametrize(
    "resource",
    ["me/messages", "drives/b!x/items/01ABC", "sites/s1/lists/l1/items", "me/drive/root", "drives/b!x"],
)
def test_graph_subscriptions_entry_no_source_reads_is_rejected_by_index_and_resource(make_env, resource):
    text = json.dumps([{"resource": "drives/ok/root"}, {"resource": resource}])

    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=text))

    assert caught.value.key == "GRAPH_SUBSCRIPTIONS"
    assert "entry 1" in str(caught.value)
    assert resource in str(caught.value)
    assert "no change source reads it" in str(caught.value)


@pytest.mark.parametrize("change_type", ["created", "deleted", "created,updated", "updated,deleted"])
def test_graph_subscriptions_change_type_graph_refuses_for_a_drive_is_rejected(make_env, change_type):
    text = json.dumps([{"resource": "drives/ok/root"}, {"resource": "drives/b!x/root", "changeType": change_type}])

    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=text))

    assert caught.value.key == "GRAPH_SUBSCRIPTIONS"
    assert "entry 1" in str(caught.value)
    assert "drives/b!x/root" in str(caught.value)
    assert "changeType" in str(caught.value)


def test_graph_subscriptions_are_optional(make_env):
    assert Settings.from_env(make_env(GRAPH_SUBSCRIPTIONS=None)).subscriptions == ()


def test_graph_subscriptions_resources_are_normalised_and_deduplicated():
    desired = parse_desired(
        json.dumps(
            [
                {"resource": "/drives/x/root/"},
                {"resource": "drives/x/root", "changeType": "updated"},
                {"resource": " users/u1/drive/root", "changeType": " updated "},
            ]
        )
    )

    assert desired == (
        DesiredSubscription("drives/x/root", "updated"),
        DesiredSubscription("users/u1/drive/root", "updated"),
    )


@pytest.mark.parametrize(
    "resource",
    ["drives/b!x/root", "sites/contoso.sharepoint.com,1,2/lists/3", "me/mailFolders('Inbox')/messages?$top=1#x"],
)
def test_desired_subscription_key_is_a_valid_table_key(resource):
    key = DesiredSubscription(resource, "updated").key

    assert not set(key) & set("/\\#?")


def test_distinct_resources_get_distinct_keys():
    keys = {DesiredSubscription(r, "updated").key for r in ("drives/a/root", "drives/b/root", "sites/s/lists/a")}

    assert len(keys) == 3


# --- defaults -------------------------------------------------------------------------------


def test_graph_base_url_defaults_to_public_graph_v1(make_env):
    assert Settings.from_env(make_env()).graph_base_url == DEFAULT_GRAPH_BASE_URL == "https://graph.microsoft.com/v1.0"


def test_graph_base_url_loses_its_trailing_slash(make_env):
    settings = Settings.from_env(make_env(GRAPH_BASE_URL="https://graph.microsoft.us/v1.0/"))

    assert settings.graph_base_url == "https://graph.microsoft.us/v1.0"


def test_renew_schedule_defaults_to_every_five_minutes(make_env):
    settings = Settings.from_env(make_env())

    assert settings.renew_schedule == DEFAULT_RENEW_SCHEDULE == "0 */5 * * * *"


def test_renew_schedule_accepts_six_ncrontab_fields(make_env):
    assert Settings.from_env(make_env(RENEW_SCHEDULE="0 0 */6 * * *")).renew_schedule == "0 0 */6 * * *"


@pytest.mark.parametrize("schedule", ["*/30 * * * *", "0 0 */30 * * * *", "hourly"])
def test_renew_schedule_needs_six_fields(make_env, schedule):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(RENEW_SCHEDULE=schedule))

    assert caught.value.key == "RENEW_SCHEDULE"


def test_sweep_after_defaults_to_fifteen_minutes(make_env):
    settings = Settings.from_env(make_env())

    assert settings.sweep_after_seconds == 900
    assert settings.sweep_after == timedelta(minutes=15)


@pytest.mark.parametrize("value", ["0", "60", " 3600 "])
def test_sweep_after_accepts_whole_seconds_including_zero(make_env, value):
    assert Settings.from_env(make_env(SWEEP_AFTER_SECONDS=value)).sweep_after_seconds == int(value)


@pytest.mark.parametrize("value", ["-1", "15m", "1.5", "soon"])
def test_sweep_after_rejects_other_values(make_env, value):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(SWEEP_AFTER_SECONDS=value))

    assert caught.value.key == "SWEEP_AFTER_SECONDS"


def test_initial_sync_defaults_to_latest(make_env):
    assert Settings.from_env(make_env()).initial_sync == "latest"


def test_initial_sync_accepts_full_in_any_case(make_env):
    assert Settings.from_env(make_env(INITIAL_SYNC="FULL")).initial_sync == "full"


def test_initial_sync_rejects_other_values(make_env):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(INITIAL_SYNC="everything"))

    assert caught.value.key == "INITIAL_SYNC"


# --- authority ------------------------------------------------------------------------------


def test_no_authority_host_means_the_public_cloud(make_env):
    settings = Settings.from_env(make_env())

    assert settings.authority_host is None
    assert settings.custom_authority is False


@pytest.mark.parametrize(
    "host",
    [
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.com/",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
    ],
)
def test_a_public_cloud_authority_is_not_custom(make_env, host):
    assert Settings.from_env(make_env(AZURE_AUTHORITY_HOST=host)).custom_authority is False


@pytest.mark.parametrize("host", ["https://127.0.0.1:8443", "https://login.example.test/", "https://localhost:9443"])
def test_a_non_public_authority_is_custom(make_env, host):
    settings = Settings.from_env(make_env(AZURE_AUTHORITY_HOST=host))

    assert settings.authority_host == host
    assert settings.custom_authority is True


def test_an_http_authority_host_is_rejected(make_env):
    with pytest.raises(InvalidSettingError) as caught:
        Settings.from_env(make_env(AZURE_AUTHORITY_HOST="http://127.0.0.1:8080"))

    assert caught.value.key == "AZURE_AUTHORITY_HOST"


def test_the_authority_ca_file_is_passed_through(make_env):
    settings = Settings.from_env(make_env(AZURE_AUTHORITY_CA_FILE="/etc/ssl/dev-authority.pem"))

    assert settings.authority_ca_file == "/etc/ssl/dev-authority.pem"


def test_an_entry_asking_resource_data_of_a_kind_without_it_is_rejected_and_named():
    entry = '[{"resource": "drives/b!x/root", "changeType": "updated", "includeResourceData": true}]'

    with pytest.raises(InvalidSettingError, match=r"entry 0 \('drives/b!x/root'\).*no resource data"):
        parse_desired(entry)


def test_an_entry_with_a_member_placeholder_needs_a_group_and_the_reverse():
    with pytest.raises(InvalidSettingError, match=r"entry 0.*forEachMemberOf"):
        parse_desired('[{"resource": "users/{member}/drive/root"}]')
    with pytest.raises(InvalidSettingError, match=r"entry 0.*forEachMemberOf"):
        parse_desired('[{"resource": "drives/b!x/root", "forEachMemberOf": "g1"}]')


def test_a_set_entry_is_read_with_its_group():
    [entry] = parse_desired('[{"resource": "users/{member}/drive/root", "forEachMemberOf": "g1"}]')

    assert (entry.resource, entry.for_each_member_of, entry.include_resource_data) == (
        "users/{member}/drive/root",
        "g1",
        False,
    )


# --- query options Graph documents on a subscription's resource ---------------------------------------

RICH = {"changeType": "created,updated,deleted", "includeResourceData": True}


@pytest.mark.parametrize(
    ("resource", "path", "query"),
    [
        ("chats/getAllMessages?model=B", "chats/getAllMessages", "model=B"),
        ("/teams/getAllMessages?model=A", "teams/getAllMessages", "model=A"),
        ("users/{id}/messages?$select=subject,from", "users/{id}/messages", "$select=subject,from"),
        ("users/u1/mailFolders/f1/messages?$select=subject", "users/u1/mailFolders/f1/messages", "$select=subject"),
        ("users/u1/events?$select=subject,start,end", "users/u1/events", "$select=subject,start,end"),
        ("teams/t1/channels/c1/messages?$search=Hello", "teams/t1/channels/c1/messages", "$search=Hello"),
    ],
)
def test_documented_query_options_are_accepted_and_reach_graph_unchanged(resource, path, query):
    [item] = parse_desired(json.dumps([{"resource": resource, **RICH}]))

    assert (item.resource, item.query) == (path, query)
    assert item.graph_resource == f"{path}?{query}"
    # The key (and so the record, the cursor and its items) is the path's: the query moves nothing.
    assert item.key == DesiredSubscription(path, RICH["changeType"]).key
    assert resource_key(item.resource) == resource_key(path)


def test_a_resource_without_a_query_keeps_its_key_and_graph_resource():
    [item] = parse_desired(json.dumps([{"resource": "chats/getAllMessages", **RICH}]))

    assert item.query == "" and item.graph_resource == "chats/getAllMessages"
    assert item.key == "chats:getAllMessages|created,updated,deleted"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"resource": "chats/getAllMessages?top=5", **RICH}, r"query option 'top' is not documented.*allowed: model"),
        ({"resource": "chats/getAllMessages?model=C", **RICH}, r"model must be A or B"),
        ({"resource": "chats/getAllMessages?model=", **RICH}, r"'model' needs a value"),
        ({"resource": "chats/getAllMessages?model=A&model=B", **RICH}, r"'model' is given twice"),
        ({"resource": "teams/getAllMessages?$select=body", **RICH}, r"'\$select' is not documented.*allowed: model"),
        ({"resource": "drives/b!x/root?model=B"}, r"'model' is not documented for a drive root \(allowed: none\)"),
        ({"resource": "users/u1/messages?$select=subject", "changeType": "created"}, r"needs includeResourceData"),
        ({"resource": "users/u1/messages?$select=subject,body", **RICH}, r"refuses \$select=body"),
        ({"resource": "users/u1/messages?$select=sub ject", **RICH}, r"property names separated by commas"),
        ({"resource": "users/u1/messages?$filter=isRead eq false", **RICH}, r"'\$filter' is not documented"),
    ],
)
def test_undocumented_or_malformed_query_options_are_refused_naming_the_entry(entry, reason):
    with pytest.raises(InvalidSettingError, match=r"GRAPH_SUBSCRIPTIONS: entry 0 \('[^']+'\): .*" + reason):
        parse_desired(json.dumps([entry]))


def test_every_channels_messages_are_a_teams_kind_that_needs_resource_data():
    with pytest.raises(InvalidSettingError, match=r"requires includeResourceData for Teams messages of all channels"):
        parse_desired(json.dumps([{"resource": "teams/getAllMessages?model=B", "changeType": "created"}]))
    [item] = parse_desired(json.dumps([{"resource": "teams/getAllMessages", **RICH}]))
    assert item.resource == "teams/getAllMessages"
