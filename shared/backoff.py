"""How long to wait before retrying a remote service (Graph, SharePoint): its hint, or exponential back-off."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import TransientGraphError

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

# A Retry-After longer than this is cut short: the message's own retries take over beyond it.
MAX_HINT_SECONDS = 60.0


def retry_wait(state: RetryCallState) -> float:
    """tenacity's wait: the error's Retry-After (at most MAX_HINT_SECONDS), else 0.5 s doubling to 8 s."""
    from tenacity import wait_exponential

    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, TransientGraphError) and error.retry_after is not None:
        return min(error.retry_after, MAX_HINT_SECONDS)
    return float(wait_exponential(multiplier=0.5, max=8)(state))


def retrying(attempts: int, patience: float | None = None) -> AsyncRetrying:
    """Retries of one remote call: throttling, 5xx and transport errors, ``attempts`` tries in all, then re-raise.

    With ``patience``, a Retry-After longer than it is not waited out here: the error is raised
    at once, for a caller that can put the whole piece of work off (a tenant's throttled pass).
    """
    import httpx
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
    from tenacity.stop import stop_base

    class impatient(stop_base):
        def __call__(self, state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            hint = error.retry_after if isinstance(error, TransientGraphError) else None
            return patience is not None and hint is not None and hint > patience

    return AsyncRetrying(
        retry=retry_if_exception_type((TransientGraphError, httpx.TransportError)),
        stop=stop_after_attempt(attempts) | impatient(),
        wait=retry_wait,
        reraise=True,
    )
