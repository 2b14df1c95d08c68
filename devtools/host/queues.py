"""Storage queue clients, message encoding, and output bindings."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devtools.host.loader import FunctionSpec
from devtools.host.settings import (
    QueueOptions,
    resolve_setting_refs,
    storage_connection_string,
)

log = logging.getLogger("devtools.host")

POLL_MINIMUM = timedelta(milliseconds=100)


class MessageDecodeError(ValueError):
    """A queue message is not valid for the configured encoding."""


def encode_message(value: bytes | str, encoding: str) -> str:
    """The wire text of a message body: base64 of its bytes, or the text itself."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8")


def decode_message(text: str, encoding: str) -> bytes:
    """The body bytes of a message as received; raises MessageDecodeError when invalid."""
    if encoding != "base64":
        return text.encode("utf-8")
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageDecodeError("message is not valid base64") from exc


def visibility_seconds(delay: timedelta) -> int:
    """Queue visibility is set in whole seconds: the storage SDKs truncate a TimeSpan."""
    return max(0, int(delay.total_seconds()))


class Backoff:
    """The listener's randomized exponential back-off between empty polls."""

    RANDOMIZATION = 0.2

    def __init__(self, minimum: timedelta, maximum: timedelta, rng: random.Random | None = None) -> None:
        self._min = minimum.total_seconds()
        self._max = max(maximum.total_seconds(), self._min)
        self._current = self._min
        self._exponent = 0
        self._rng = rng or random.Random()

    def next_delay(self, found_messages: bool) -> float:
        """Seconds to wait: the minimum after finding messages, else growing to the maximum."""
        if found_messages:
            self._current, self._exponent = self._min, 1
        elif self._current != self._max:
            interval = self._min
            if self._exponent > 0:
                factor = self._rng.uniform(1 - self.RANDOMIZATION, 1 + self.RANDOMIZATION)
                interval += factor * (2 ** (self._exponent - 1)) * self._min
            if interval < self._max:
                self._current = interval
                self._exponent += 1
            else:
                self._current = self._max
        return self._current


class QueueClients:
    """aio queue clients, one service client per connection string, bound to the host loop."""

    def __init__(self) -> None:
        self._services: dict[str, QueueServiceClient] = {}
        self._created: set[tuple[str, str]] = set()

    def queue(self, connection: str | None, queue_name: str) -> QueueClient:
        """A client for a queue (no encode/decode policy: the host handles encoding)."""
        conn = storage_connection_string(connection)
        service = self._services.get(conn)
        if service is None:
            service = self._services[conn] = QueueServiceClient.from_connection_string(conn)
        return service.get_queue_client(queue_name)

    async def ensure(self, client: QueueClient) -> None:
        """Create the queue once if it is missing."""
        key = (client.url, client.queue_name)
        if key in self._created:
            return
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()
        self._created.add(key)

    def forget(self, client: QueueClient) -> None:
        """Check the queue's existence again before the next use."""
        self._created.discard((client.url, client.queue_name))

    async def close(self) -> None:
        """Close every client."""
        for service in self._services.values():
            await service.close()
        self._services.clear()


def _message_bodies(value: Any) -> list[bytes | str]:
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, (list, tuple)):
        out: list[bytes | str] = []
        for item in value:
            out.extend(_message_bodies(item))
        return out
    raise TypeError(
        f"a queue output accepts str, bytes, func.QueueMessage or a list of them, not {type(value).__name__}"
    )


class QueueOutputSink:
    """Sends the values set on queue output bindings once the invocation succeeded."""

    def __init__(self, clients: QueueClients, options: QueueOptions) -> None:
        self._clients = clients
        self._options = options
        self._watchers: dict[str, list[Callable[[], None]]] = {}

    def watch(self, queue_name: str, notify: Callable[[], None]) -> None:
        """Wake a local poller when this host writes to its queue, as the host's shared watcher does."""
        self._watchers.setdefault(queue_name, []).append(notify)

    async def flush(self, spec: FunctionSpec, outputs: Mapping[str, Any]) -> None:
        """Send each queue output binding's messages."""
        for binding in spec.outputs:
            if binding.name not in outputs:
                continue
            if binding.type.lower() == "http":
                continue
            if binding.type.lower() != "queue":
                log.warning(
                    "%s: output binding type %s is not supported locally; value dropped", spec.name, binding.type
                )
                continue
            queue_name = resolve_setting_refs(str(binding.get("queueName")))
            client = self._clients.queue(binding.get("connection"), queue_name)
            await self._clients.ensure(client)
            for body in _message_bodies(outputs[binding.name]):
                await client.send_message(encode_message(body, self._options.message_encoding))
            for notify in self._watchers.get(queue_name, []):
                notify()
