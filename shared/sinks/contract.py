"""What a sink is: something that delivers the messages of its own queue somewhere.

``deliver`` raises DeliveryRetryError (try again later), DeliveryRejectedError (never
will succeed: poison now) or DeliveryDeferredError (wait, not a failure); any other
exception is retried like a DeliveryRetryError, up to the sink's horizon (runner.py).
``abandon`` is told when a message is poisoned, so a sink can release what it held for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Sink(Protocol):
    """A destination fed by one queue."""

    async def deliver(self, messages: Sequence[dict[str, Any]]) -> None:
        """Deliver the messages (change events, or the sink's own follow-ups), or raise."""
        ...

    async def abandon(self, messages: Sequence[dict[str, Any]]) -> None:
        """The messages went to the poison queue: release anything held for them."""
        ...

    async def close(self) -> None:
        """Close the sink's clients."""
        ...
