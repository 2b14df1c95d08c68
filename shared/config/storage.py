"""Where the app's storage is: AzureWebJobsStorage, read as the Functions host reads it, and CHANGES_STORAGE."""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.config.environment import check_url, optional
from shared.errors import InvalidSettingError, MissingSettingError
from shared.model.connection import StorageConnection

STORAGE_SETTING = "AzureWebJobsStorage"
CHANGES_SETTING = "CHANGES_STORAGE"


def storage_connection(
    environ: Mapping[str, str], setting: str = STORAGE_SETTING, services: tuple[str, ...] = ("queue", "table")
) -> StorageConnection:
    """Read only the storage connection: the HTTP path needs nothing else.

    A connection string wins, as with the Functions host; otherwise the identity-based
    settings must give an endpoint for each of ``services``. A gap names the setting.
    """
    text = optional(environ, setting)
    if text is not None:
        return StorageConnection(connection_string=text)
    prefix = f"{setting}__"
    account = optional(environ, f"{prefix}accountName")
    if account is not None and not re.fullmatch(r"[a-z0-9]{3,24}", account):
        raise InvalidSettingError(f"{prefix}accountName", "must be 3 to 24 lower-case letters and digits")
    uris: dict[str, str | None] = {}
    for service in ("queue", "table", "blob"):
        key = f"{prefix}{service}ServiceUri"
        uri = optional(environ, key)
        if uri is not None:
            check_url(key, uri)
        elif account is not None:
            uri = f"https://{account}.{service}.core.windows.net"
        uris[service] = uri.rstrip("/") if uri else None
    if all(uri is None for uri in uris.values()):
        raise MissingSettingError(setting)
    for service in services:
        if uris[service] is None:
            raise MissingSettingError(f"{prefix}{service}ServiceUri")
    credential = optional(environ, f"{prefix}credential")
    if credential is not None and credential.lower() != "managedidentity":
        raise InvalidSettingError(f"{prefix}credential", "the only value is 'managedidentity'")
    return StorageConnection(
        queue_service_uri=uris["queue"],
        table_service_uri=uris["table"],
        blob_service_uri=uris["blob"],
        credential=credential.lower() if credential else None,
        client_id=optional(environ, f"{prefix}clientId"),
    )


def changes_connection(environ: Mapping[str, str]) -> StorageConnection | None:
    """Where graph-changes lives: ``CHANGES_STORAGE`` (same forms as AzureWebJobsStorage), else None.

    None keeps it in the app's own account. Another account lets consumers read events
    without any right on the account that holds the app's secrets and cursors.
    """
    named = (key for key, value in environ.items() if value.strip())
    if not any(key == CHANGES_SETTING or key.startswith(f"{CHANGES_SETTING}__") for key in named):
        return None
    return storage_connection(environ, CHANGES_SETTING, services=("queue",))
