"""The queue trigger: poll, invoke, then delete, retry or poison each message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueMessage as StorageMessage
from azure.storage.queue.aio import QueueClient

from devtools.host.invoker import Invoker
from devtools.host.loader import FunctionSpec
from devtools.host.queues import (
    POLL_MINIMUM,
    Backoff,
    MessageDecodeError,
    QueueClients,
    decode_message,
    visibility_seconds,
)
from devtools.host.settings import QueueOptions

log = logging.getLogger("devtools.host")

# The host keeps a running message invisible for 10 minutes and renews at half of that.
LEASE_SECONDS = 600


def to_function_message(msg: StorageMessage, body: bytes) -> QueueMessage:
    """The `func.QueueMessage` the worker builds from a storage message."""
    return QueueMessage(  # type: ignore[no-untyped-call]
        id=msg.id,
        body=body,
        dequeue_count=msg.dequeue_count,
        expiration_time=msg.expires_on,
        insertion_time=msg.inserted_on,
        time_next_visible=msg.next_visible_on,
        pop_receipt=msg.pop_receipt,
    )


class QueueListener:
    """One poller per queue-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        queue: QueueClient,
        poison: QueueClient | None,
        clients: QueueClients,
        invoker: Invoker,
        options: QueueOptions,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        self.spec = spec
        self._lease_seconds = max(1, lease_seconds)
        self._queue = queue
        self._poison = poison
        self._clients = clients
        self._invoker = invoker
        self._options = options
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._processing: set[asyncio.Task[None]] = set()

    @property
    def queue_name(self) -> str:
        """The queue this listener polls."""
        return self._queue.queue_name

    def notify(self) -> None:
        """Poll now: a message was just written to this queue by this host."""
        self._wake.set()

    def stop(self) -> None:
        """Stop fetching messages; running ones finish (see `run`)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Poll until stopped, then wait for the messages in progress."""
        backoff = Backoff(POLL_MINIMUM, self._options.max_polling_interval)
        found_since_delay = False
        try:
            while not self._stopping.is_set():
                # Cleared before polling, so a notify that lands during the poll still cuts the next wait short.
                self._wake.clear()
                try:
                    batch = await self._poll_unless_stopped()
                except (HttpResponseError, ServiceRequestError) as exc:
                    # Re-check that the queue exists next time, as the host does after any storage error.
                    self._clients.forget(self._queue)
                    log.warning("queue %s: polling failed: %s", self.queue_name, type(exc).__name__)
                    batch = []
                except Exception:
                    log.exception("queue %s: polling failed", self.queue_name)
                    batch = []
                if batch:
                    found_since_delay = True
                    for msg in batch:
                        task = asyncio.create_task(self._process(msg))
                        self._processing.add(task)
                        task.add_done_callback(self._processing.discard)
                    # Fetch again at once, but only when in-flight work is down to the threshold.
                    while len(self._processing) > self._options.threshold():
                        await asyncio.wait(set(self._processing), return_when=asyncio.FIRST_COMPLETED)
                    continue
                await self._sleep(backoff.next_delay(found_since_delay))
                found_since_delay = False
        finally:
            if self._processing:
                await asyncio.gather(*self._processing, return_exceptions=True)

    async def _receive(self) -> list[StorageMessage]:
        await self._clients.ensure(self._queue)
        return [
            m
            async for m in self._queue.receive_messages(
                messages_per_page=self._options.batch_size,
                max_messages=self._options.batch_size,
                visibility_timeout=self._lease_seconds,
            )
        ]

    async def _poll_unless_stopped(self) -> list[StorageMessage]:
        # Stopping cancels a poll in progress (the SDK may be retrying an unreachable
        # account), as the host cancels its receive; message work is never cancelled.
        poll = asyncio.create_task(self._receive())
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return []
        return poll.result()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _process(self, msg: StorageMessage) -> None:
        try:
            await self._handle(msg)
        except Exception:  # one bad message must not stop the listener
            log.exception("queue %s: message %s could not be completed", self.queue_name, msg.id)

    async def _handle(self, msg: StorageMessage) -> None:
        if msg.dequeue_count is not None and msg.dequeue_count > self._options.max_dequeue_count:
            await self._to_poison(msg)
            return
        try:
            body = decode_message(str(msg.content or ""), self._options.message_encoding)
        except MessageDecodeError:
            log.warning("Message decoding has failed! Check MessageEncoding settings. MessageId=%s.", msg.id)
            await self._to_poison(msg)
            return
        lease = _Lease(self._queue, msg, self._lease_seconds)
        renew = asyncio.create_task(lease.keep_alive())
        try:
            result = await self._invoker.invoke(
                self.spec, to_function_message(msg, body), f"New queue message detected on '{self.queue_name}'."
            )
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        if result.succeeded:
            await self._quietly(self._queue.delete_message(msg.id, lease.pop_receipt))
        elif self._poison is not None and (msg.dequeue_count or 0) >= self._options.max_dequeue_count:
            await self._to_poison(msg, lease.pop_receipt)
        elif self._poison is not None:
            delay = visibility_seconds(self._options.visibility_timeout)
            await self._quietly(self._queue.update_message(msg.id, lease.pop_receipt, visibility_timeout=delay))
        # Without a poison queue the host leaves a failed message invisible, to avoid a hot loop.

    async def _to_poison(self, msg: StorageMessage, pop_receipt: str | None = None) -> None:
        if self._poison is None:
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'. MessageId=%s",
            self._options.max_dequeue_count,
            self._poison.queue_name,
            msg.id,
        )
        await self._clients.ensure(self._poison)
        # The raw text is copied, so the poison message has the same content (and encoding).
        await self._poison.send_message(msg.content)
        await self._quietly(self._queue.delete_message(msg.id, pop_receipt or msg.pop_receipt))

    async def _quietly(self, call: Any) -> None:
        # The host ignores a message that is gone or was taken over (pop receipt mismatch).
        try:
            await call
        except ResourceNotFoundError:
            log.debug("queue %s: message already gone", self.queue_name)
        except HttpResponseError as exc:
            if exc.status_code == 400 and "PopReceipt" in str(getattr(exc, "error_code", "")):
                return
            raise


class _Lease:
    """Keeps a running message invisible, renewing at half the lease as the host does."""

    def __init__(self, queue: QueueClient, msg: StorageMessage, seconds: int = LEASE_SECONDS) -> None:
        self._queue = queue
        self._id = msg.id
        self._seconds = seconds
        self.pop_receipt: str | None = msg.pop_receipt

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._seconds / 2)
            try:
                updated = await self._queue.update_message(self._id, self.pop_receipt, visibility_timeout=self._seconds)
                self.pop_receipt = updated.pop_receipt
            except HttpResponseError as exc:
                log.warning(
                    "queue %s: could not renew message %s: %s", self._queue.queue_name, self._id, exc.status_code
                )
                return


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`, except for queues that are poison queues or too long (63 chars)."""
    if queue_name.endswith("-poison"):
        return None
    name = f"{queue_name}-poison"
    return name if len(name) <= 63 else None
