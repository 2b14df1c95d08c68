"""The storage connection, read like the Functions host reads it, and the clients built from it.

No network here: an identity-based connection cannot run against Azurite over plain
HTTP (the SDKs refuse a bearer token on a non-TLS URL), so these tests check the
endpoints, the credential type and the client id each client gets.
"""

from __future__ import annotations

import pytest

from shared.config.settings import health_cache_seconds, http_auth_level
from shared.config.storage import changes_connection, storage_connection
from shared.errors import InvalidSettingError, MissingSettingError
from shared.stores.clients import DEVELOPMENT_STORAGE, queue_client, storage_credential, table_client

PREFIX = "AzureWebJobsStorage__"


def test_a_connection_string_wins_and_needs_no_credential():
    connection = storage_connection({"AzureWebJobsStorage": "UseDevelopmentStorage=true", f"{PREFIX}accountName": "x"})

    assert connection.connection_string == "UseDevelopmentStorage=true"
    assert not connection.identity_based
    assert storage_credential(connection) is None


def test_the_account_name_gives_the_public_cloud_endpoints():
    connection = storage_connection({f"{PREFIX}accountName": "graphhooks01"})

    assert connection.identity_based
    assert connection.queue_service_uri == "https://graphhooks01.queue.core.windows.net"
    assert connection.table_service_uri == "https://graphhooks01.table.core.windows.net"
    assert connection.blob_service_uri == "https://graphhooks01.blob.core.windows.net"


def test_explicit_service_uris_win_over_the_account_name():
    connection = storage_connection(
        {
            f"{PREFIX}accountName": "graphhooks01",
            f"{PREFIX}queueServiceUri": "https://q.example.net/",
            f"{PREFIX}tableServiceUri": "https://t.example.net",
        }
    )

    assert connection.queue_service_uri == "https://q.example.net"
    assert connection.table_service_uri == "https://t.example.net"


def test_no_storage_setting_at_all_names_azurewebjobsstorage():
    with pytest.raises(MissingSettingError) as caught:
        storage_connection({})
    assert caught.value.key == "AzureWebJobsStorage"


def test_a_queue_uri_without_a_table_uri_names_the_missing_one():
    with pytest.raises(MissingSettingError) as caught:
        storage_connection({f"{PREFIX}queueServiceUri": "https://q.example.net"})
    assert caught.value.key == f"{PREFIX}tableServiceUri"


def test_without_changes_storage_graph_changes_stays_in_the_apps_account():
    assert changes_connection({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "CHANGES_STORAGE": " "}) is None


def test_changes_storage_takes_a_connection_string():
    connection = changes_connection({"CHANGES_STORAGE": "DefaultEndpointsProtocol=https;AccountName=events"})

    assert connection is not None
    assert connection.connection_string == "DefaultEndpointsProtocol=https;AccountName=events"


def test_changes_storage_identity_based_needs_only_a_queue_endpoint():
    connection = changes_connection(
        {
            "CHANGES_STORAGE__queueServiceUri": "https://events.queue.core.windows.net",
            "CHANGES_STORAGE__credential": "managedidentity",
        }
    )

    assert connection is not None and connection.identity_based
    assert connection.queue_service_uri == "https://events.queue.core.windows.net"
    assert connection.credential == "managedidentity"


def test_changes_storage_with_a_bad_value_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        changes_connection({"CHANGES_STORAGE__queueServiceUri": "events"})
    assert caught.value.key == "CHANGES_STORAGE__queueServiceUri"


def test_a_service_uri_that_is_not_a_url_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        storage_connection({f"{PREFIX}queueServiceUri": "q.example.net", f"{PREFIX}tableServiceUri": "https://t.x"})
    assert caught.value.key == f"{PREFIX}queueServiceUri"


def test_an_account_name_storage_would_refuse_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        storage_connection({f"{PREFIX}accountName": "Not_An_Account"})
    assert caught.value.key == f"{PREFIX}accountName"


def test_an_unknown_credential_kind_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        storage_connection({f"{PREFIX}accountName": "graphhooks01", f"{PREFIX}credential": "clientsecret"})
    assert caught.value.key == f"{PREFIX}credential"


def test_managedidentity_with_a_client_id_selects_that_user_assigned_identity(monkeypatch):
    import azure.identity.aio

    built: list[dict[str, object]] = []
    monkeypatch.setattr(azure.identity.aio, "ManagedIdentityCredential", lambda **kw: built.append(kw) or kw)
    connection = storage_connection(
        {f"{PREFIX}accountName": "graphhooks01", f"{PREFIX}credential": "managedidentity", f"{PREFIX}clientId": "c-1"}
    )

    storage_credential(connection)

    assert built == [{"client_id": "c-1"}]


def test_managedidentity_without_a_client_id_is_the_system_assigned_identity(monkeypatch):
    import azure.identity.aio

    built: list[dict[str, object]] = []
    monkeypatch.setattr(azure.identity.aio, "ManagedIdentityCredential", lambda **kw: built.append(kw) or kw)

    storage_credential(storage_connection({f"{PREFIX}accountName": "a1b2c", f"{PREFIX}credential": "ManagedIdentity"}))

    assert built == [{}]


async def test_without_a_credential_kind_default_azure_credential_serves_local_development():
    from azure.identity.aio import DefaultAzureCredential

    credential = storage_credential(storage_connection({f"{PREFIX}accountName": "graphhooks01"}))

    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()


async def test_identity_based_clients_use_the_service_uris_and_the_shared_credential():
    connection = storage_connection({f"{PREFIX}accountName": "graphhooks01", f"{PREFIX}credential": "managedidentity"})
    credential = storage_credential(connection)
    assert credential is not None

    queue = queue_client(connection, "graph-notifications", credential)
    table = table_client(connection, "subscriptions", credential)

    assert queue.url == "https://graphhooks01.queue.core.windows.net/graph-notifications"
    assert queue.credential is credential
    assert table.url.startswith("https://graphhooks01.table.core.windows.net")
    assert table.table_name == "subscriptions"
    assert table.credential is credential
    await queue.close()
    await table.close()
    await credential.close()


async def test_a_connection_string_client_keeps_base64_messages_and_the_development_account():
    queue = queue_client(storage_connection({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}), "q")

    assert queue.url == "http://127.0.0.1:10001/devstoreaccount1/q"
    assert queue.account_name == "devstoreaccount1"
    assert type(queue._message_encode_policy).__name__ == "TextBase64EncodePolicy"
    assert "devstoreaccount1" in DEVELOPMENT_STORAGE
    await queue.close()


@pytest.mark.parametrize("level", ["anonymous", "function", "admin", "FUNCTION"])
def test_the_http_auth_level_setting_accepts_the_hosts_levels(level):
    assert http_auth_level({"HTTP_AUTH_LEVEL": level}) == level.lower()


def test_the_http_auth_level_defaults_to_anonymous_for_local_runs():
    assert http_auth_level({}) == "anonymous"


def test_an_unknown_http_auth_level_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        http_auth_level({"HTTP_AUTH_LEVEL": "user"})
    assert caught.value.key == "HTTP_AUTH_LEVEL"


def test_a_health_cache_that_is_not_a_number_is_named():
    with pytest.raises(InvalidSettingError) as caught:
        health_cache_seconds({"HEALTH_CACHE_SECONDS": "soon"})
    assert caught.value.key == "HEALTH_CACHE_SECONDS"


def test_the_settings_take_the_identity_based_storage_form(make_env):
    from shared.config.settings import Settings

    settings = Settings.from_env(make_env(AzureWebJobsStorage=None, **{f"{PREFIX}accountName": "graphhooks01"}))

    assert settings.storage_connection.identity_based
    assert settings.storage_connection.table_service_uri == "https://graphhooks01.table.core.windows.net"


def test_with_managed_identity_graph_client_id_may_be_left_out(make_env):
    from shared.config.settings import Settings

    settings = Settings.from_env(make_env(GRAPH_CLIENT_SECRET=None, GRAPH_CLIENT_ID=None, AZURE_CLIENT_ID="uami-1"))

    assert settings.client_id == ""
    assert settings.azure_client_id == "uami-1"


def test_rich_notifications_need_graph_client_id_as_the_token_audience(make_env):
    from shared.config.settings import Settings

    rich = '[{"resource": "users/u1/messages", "changeType": "created", "includeResourceData": true}]'
    with pytest.raises(MissingSettingError) as caught:
        Settings.from_env(make_env(GRAPH_CLIENT_SECRET=None, GRAPH_CLIENT_ID=None, GRAPH_SUBSCRIPTIONS=rich))
    assert caught.value.key == "GRAPH_CLIENT_ID"


async def test_azure_client_id_selects_the_user_assigned_identity_that_calls_graph(make_env, monkeypatch):
    import azure.identity.aio

    from shared.app.credentials import build_client
    from shared.config.settings import Settings

    built: list[dict[str, object]] = []

    class Recorded:
        def __init__(self, **options: object) -> None:
            built.append(options)

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", Recorded)
    build_client(Settings.from_env(make_env(GRAPH_CLIENT_SECRET=None, AZURE_CLIENT_ID="uami-1")))

    assert built[0]["managed_identity_client_id"] == "uami-1"


async def test_azure_client_id_selects_the_user_assigned_identity_that_calls_sharepoint(make_env, monkeypatch):
    import azure.identity.aio

    from shared.app.credentials import build_sharepoint_client
    from shared.config.settings import Settings

    built: list[dict[str, object]] = []

    class Recorded:
        def __init__(self, **options: object) -> None:
            built.append(options)

        async def close(self) -> None:
            pass

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", Recorded)
    client = await build_sharepoint_client(
        Settings.from_env(make_env(GRAPH_CLIENT_SECRET=None, AZURE_CLIENT_ID="uami-1"))
    )
    await client.close()

    # The Bicep template gives the app only a user-assigned identity: SharePoint must use it too.
    assert built[0]["managed_identity_client_id"] == "uami-1"
