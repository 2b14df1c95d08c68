"""The queue adapter: text messages on an Azure Storage queue."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import StorageUnavailableError

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

    from shared.queues.claims import ClaimStore


# Storage's default time-to-live is 7 days: a consumer down for a week would lose events.
NEVER_EXPIRES = -1


@dataclass(frozen=True)
class Receipt:
    """What names one stored message for an update: its id and current pop receipt."""

    message_id: str
    pop_receipt: str


class MessageQueue:
    """Send text messages to one queue, which never expire; the client decides the encoding."""

    def __init__(self, client: QueueClient, concurrency: int = 16, claims: ClaimStore | None = None) -> None:
        self._client = client
        self._concurrency = concurrency
        # Where this queue's messages keep items too large for a message (queues/claims.py); None: nowhere.
        self.claims = claims

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._client.queue_name

    async def send(self, text: str, delay_seconds: float = 0) -> Receipt:
        """Store one message, creating the queue on first use; raise StorageUnavailableError."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        visibility = math.ceil(delay_seconds) if delay_seconds > 0 else None
        try:
            try:
                sent = await self._client.send_message(text, visibility_timeout=visibility, time_to_live=NEVER_EXPIRES)
            except ResourceNotFoundError:
                # Creating only on a miss keeps the common path to one round trip.
                await self._create()
                sent = await self._client.send_message(text, visibility_timeout=visibility, time_to_live=NEVER_EXPIRES)
        except AzureError as exc:
            raise StorageUnavailableError(f"queue {self.name} write failed: {type(exc).__name__}") from exc
        return Receipt(sent.id, str(sent.pop_receipt))

    async def update(self, receipt: Receipt, text: str, delay_seconds: float) -> Receipt | None:
        """Replace a stored message's text and make it visible in ``delay_seconds``.

        None when the message is no longer as sent: received (its pop receipt changed),
        or deleted. Storage allows the update only while nobody has received it since,
        which is what makes it safe to rely on the message's future run.
        """
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

        try:
            updated = await self._client.update_message(
                receipt.message_id,
                pop_receipt=receipt.pop_receipt,
                content=text,
                visibility_timeout=max(0, math.ceil(delay_seconds)),
            )
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 400 and getattr(exc, "error_code", None) == "PopReceiptMismatch":
                return None
            raise StorageUnavailableError(f"queue {self.name} update failed: {type(exc).__name__}") from exc
        except AzureError as exc:
            raise StorageUnavailableError(f"queue {self.name} update failed: {type(exc).__name__}") from exc
        return Receipt(receipt.message_id, str(updated.pop_receipt))

    async def send_all(self, texts: Iterable[str]) -> None:
        """Store many messages with bounded concurrency; raise if any write failed."""
        gate = asyncio.Semaphore(self._concurrency)

        async def one(text: str) -> None:
            async with gate:
                await self.send(text)

        await asyncio.gather(*(one(text) for text in texts))

    async def _create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await self._client.create_queue()


async def move_to_poison(poison: MessageQueue, body: str | bytes) -> None:
    """Store a failed message on a poison queue with no expiry (the host's own copy expires in 7 days)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    await poison.send(text)
