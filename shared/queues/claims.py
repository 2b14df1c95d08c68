"""Claim checks: a notification too large for a queue message waits in a blob of its own.

A queue message holds 48 KiB of JSON (model/notifications.py), and one rich notification can
be larger (a Teams message with its HTML, mentions and cards). The HTTP path writes such
an item to a blob in CONTAINER and queues a small claim in its place,
``{"subscriptionId": ..., "@graphhooks.claim": {"blob": "2026/11/22/<hex>.json"}}``; the
queue trigger redeems the claims of an envelope as it reads it. A redeemed item remembers
its claim (notifications.ClaimedItem), so an envelope written again carries the claim.

Nothing here deletes a blob: a claim can be read again by a host retry, a deferral or a
poison replay. The blobs expire by age instead, by the storage account's lifecycle rule
(infra/app/storage.bicep). The storage SDK loads on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import MalformedBodyError, StorageUnavailableError
from shared.model.notifications import MAX_BODY_BYTES, ClaimedItem, Envelope

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.blob.aio import ContainerClient

    from shared.model.connection import StorageConnection

log = logging.getLogger(__name__)

CONTAINER = "graph-notification-items"
# An OData-style annotation in this app's namespace: no notification Graph sends carries it.
CLAIM = "@graphhooks.claim"
# The names check_in gives: a claim naming anything else is not one of ours.
_BLOB_NAME = re.compile(r"\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.json")
# Blob reads one envelope makes at once.
_READS_AT_ONCE = 16


class ClaimStore:
    """The blobs that hold items too large for a queue message, in the app's storage account.

    ``container`` builds the container client on first use, so the SDK loads only when
    a large item comes.
    """

    def __init__(self, container: Callable[[], ContainerClient]) -> None:
        self._factory = container
        self._built: ContainerClient | None = None

    def _container(self) -> ContainerClient:
        if self._built is None:
            self._built = self._factory()
        return self._built

    async def check_in(self, subscription_id: str, encoded: bytes, received_at: datetime) -> dict[str, Any]:
        """Store one encoded item in a blob of its own; return the claim that stands for it.

        Raise StorageUnavailableError when the blob cannot be written.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        name = f"{received_at:%Y/%m/%d}/{uuid.uuid4().hex}.json"
        blob = self._container().get_blob_client(name)
        settings = ContentSettings(content_type="application/json")
        try:
            try:
                await blob.upload_blob(encoded, overwrite=False, content_settings=settings)
            except ResourceNotFoundError:
                # Creating only on a miss keeps the common path to one round trip.
                await self._create()
                await blob.upload_blob(encoded, overwrite=False, content_settings=settings)
        except AzureError as exc:
            raise StorageUnavailableError(f"blob container {CONTAINER} write failed: {type(exc).__name__}") from exc
        return {"subscriptionId": subscription_id, CLAIM: {"blob": name}}

    async def read(self, name: str) -> bytes:
        """The bytes ``check_in`` stored under ``name``; MalformedBodyError when they are gone."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = await self._container().download_blob(name)
        except ResourceNotFoundError as exc:
            log.error("a claim names blob %s/%s, which is gone (expired, or deleted)", CONTAINER, name)
            raise MalformedBodyError(f"claimed item {name} is gone") from exc
        if downloader.size > MAX_BODY_BYTES:
            raise MalformedBodyError(f"claimed item {name} is larger than any notification")
        return bytes(await downloader.readall())

    async def close(self) -> None:
        """Close the container client, if one was built."""
        if self._built is not None:
            await self._built.close()

    async def _create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await self._container().create_container()


def _container_client(
    connection: StorageConnection, credential: AsyncTokenCredential | None, **options: Any
) -> ContainerClient:
    from shared.stores.clients import container_client

    return container_client(connection, CONTAINER, credential, **options)


def claims_for(
    connection: StorageConnection, credential: AsyncTokenCredential | None, **options: Any
) -> ClaimStore | None:
    """The app's claim store, or None when the storage connection names no blob endpoint."""
    if connection.connection_string is None and connection.blob_service_uri is None:
        log.warning("no blob endpoint in the storage connection: notifications over 48 KiB are refused with 413")
        return None
    return ClaimStore(lambda: _container_client(connection, credential, **options))


def claim_of(item: dict[str, Any]) -> str | None:
    """The blob name ``item`` claims, or None when it is a notification itself."""
    if set(item) != {"subscriptionId", CLAIM}:
        return None
    claim = item[CLAIM]
    name = claim.get("blob") if isinstance(claim, dict) else None
    if not isinstance(name, str) or not _BLOB_NAME.fullmatch(name):
        raise MalformedBodyError("a claim names no blob of this app")
    return name


async def redeem(envelope: Envelope, store: ClaimStore | None) -> Envelope:
    """``envelope`` with each claim replaced by the item it stands for (a ClaimedItem).

    ``store`` is the claim store of the queue the envelope was read from; it is needed
    only when there is a claim. Raise MalformedBodyError when a claim cannot be honoured
    (no store, blob gone, not the item it should be): no retry would change that. Storage errors propagate, so the
    host retries the message.
    """
    claims = {index: name for index, item in enumerate(envelope.items) if (name := claim_of(item)) is not None}
    if not claims:
        return envelope
    if store is None:
        raise MalformedBodyError("the envelope holds claims, but no blob storage is configured to redeem them")
    gate = asyncio.Semaphore(_READS_AT_ONCE)

    async def one(index: int, name: str) -> ClaimedItem:
        async with gate:
            raw = await store.read(name)
        claim = envelope.items[index]
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise MalformedBodyError(f"claimed item {name} is not JSON") from exc
        if not isinstance(item, dict) or item.get("subscriptionId") != claim["subscriptionId"]:
            raise MalformedBodyError(f"claimed item {name} is not the notification claimed")
        return ClaimedItem(item, claim)

    redeemed = await asyncio.gather(*(one(index, name) for index, name in claims.items()))
    items = list(envelope.items)
    for index, item in zip(claims, redeemed, strict=True):
        items[index] = item
    return replace(envelope, items=items)
