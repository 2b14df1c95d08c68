"""How the app reaches a storage account: a value, read from the environment by the settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageConnection:
    """How the app reaches its storage account, read like the Functions host reads it.

    Either a connection string (``AzureWebJobsStorage``, ``UseDevelopmentStorage=true``
    included) or the identity-based form: service URIs from ``AzureWebJobsStorage__accountName``
    or ``__queueServiceUri``/``__tableServiceUri``/``__blobServiceUri``, reached with a token
    credential: ``__credential=managedidentity`` (``__clientId`` picks a user-assigned
    identity) or, without it, azure-identity's DefaultAzureCredential (``az login`` locally).
    """

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    blob_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None

    @property
    def identity_based(self) -> bool:
        """True when the clients authenticate with a token credential, not an account key."""
        return self.connection_string is None
