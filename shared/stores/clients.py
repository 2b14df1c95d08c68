"""Azure Storage SDK clients (queue, table, blob) built from the app's storage connection (Azure or Azurite).

A connection string (``UseDevelopmentStorage=true`` included) authenticates with the
account key; the identity-based form (``AzureWebJobsStorage__accountName`` or the
``__*ServiceUri`` settings) with an azure-identity token credential, the same settings
that drive the Functions host's triggers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.model.connection import StorageConnection

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient
    from azure.storage.blob.aio import ContainerClient
    from azure.storage.queue.aio import QueueClient

# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def expand_connection(connection: str) -> str:
    """Expand the ``UseDevelopmentStorage=true`` shorthand, which the Python SDKs lack."""
    if connection.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE
    return connection


def as_connection(connection: str | StorageConnection) -> StorageConnection:
    """A plain string is a connection string."""
    return connection if isinstance(connection, StorageConnection) else StorageConnection(connection_string=connection)


def storage_credential(connection: str | StorageConnection) -> AsyncTokenCredential | None:
    """The token credential an identity-based connection uses; None for a connection string.

    ``__credential=managedidentity`` means the app's managed identity (``__clientId`` selects
    a user-assigned one), as the Functions host reads it; without it, DefaultAzureCredential,
    which also finds a developer's ``az login``. The caller closes it.
    """
    conn = as_connection(connection)
    if not conn.identity_based:
        return None
    if conn.credential == "managedidentity":
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=conn.client_id) if conn.client_id else ManagedIdentityCredential()
    from azure.identity.aio import DefaultAzureCredential

    if conn.client_id:
        return DefaultAzureCredential(managed_identity_client_id=conn.client_id)
    return DefaultAzureCredential()


def queue_client(
    connection: str | StorageConnection,
    name: str,
    credential: AsyncTokenCredential | None = None,
    **options: Any,
) -> QueueClient:
    """An async queue client that base64-encodes text, as the Functions host expects.

    An identity-based connection needs ``credential`` (see ``storage_credential``); one is
    built when none is given, and then closes with nothing: pass one to share and close it.
    """
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    conn = as_connection(connection)
    codecs: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    if conn.connection_string is not None:
        return QueueClient.from_connection_string(expand_connection(conn.connection_string), name, **codecs, **options)
    assert conn.queue_service_uri is not None  # storage_connection guarantees it
    token = credential or storage_credential(conn)
    return QueueClient(conn.queue_service_uri, name, credential=token, **codecs, **options)


def container_client(
    connection: str | StorageConnection,
    name: str,
    credential: AsyncTokenCredential | None = None,
    **options: Any,
) -> ContainerClient:
    """An async blob container client; ValueError when the connection names no blob endpoint."""
    from azure.storage.blob.aio import ContainerClient

    conn = as_connection(connection)
    if conn.connection_string is not None:
        return ContainerClient.from_connection_string(expand_connection(conn.connection_string), name, **options)
    if conn.blob_service_uri is None:
        raise ValueError("the storage connection names no blob endpoint")
    return ContainerClient(conn.blob_service_uri, name, credential=credential or storage_credential(conn), **options)


def table_client(
    connection: str | StorageConnection,
    name: str,
    credential: AsyncTokenCredential | None = None,
    **options: Any,
) -> TableClient:
    """An async Table storage client; ``credential`` as for ``queue_client``."""
    from azure.data.tables.aio import TableClient

    conn = as_connection(connection)
    if conn.connection_string is not None:
        return TableClient.from_connection_string(expand_connection(conn.connection_string), name, **options)
    assert conn.table_service_uri is not None  # storage_connection guarantees it
    token = credential or storage_credential(conn)
    return TableClient(conn.table_service_uri, name, credential=token, **options)
