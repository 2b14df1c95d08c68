"""Storage clients built from the app's connection string (Azure or Azurite)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient
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


def queue_client(connection: str, name: str, **options: Any) -> QueueClient:
    """An async queue client that base64-encodes text, as the Functions host expects."""
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    return QueueClient.from_connection_string(
        expand_connection(connection),
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        **options,
    )


def table_client(connection: str, name: str, **options: Any) -> TableClient:
    """An async Table storage client."""
    from azure.data.tables.aio import TableClient

    return TableClient.from_connection_string(expand_connection(connection), name, **options)
