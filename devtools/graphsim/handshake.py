"""The notification-URL validation handshake Graph performs before creating a subscription."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from .errors import GraphError

log = logging.getLogger("graphsim.handshake")

FAILED = "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
TIMED_OUT = "Subscription validation request timed out."


def make_token() -> str:
    """A validation token that needs URL-encoding (spaces, reserved and non-ASCII characters).

    Real tokens are opaque and change format without notice; this one is built to catch
    receivers that echo the raw query string instead of the decoded value.
    """
    return f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()} +%/&=é✓"


def validation_url(url: str, token: str) -> str:
    """Append ``validationToken`` to ``url``, keeping any query it already has (e.g. ?code=)."""
    parts = urlsplit(url)
    extra = "validationToken=" + quote(token, safe="")
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def validate(session: aiohttp.ClientSession, url: str, limit_seconds: float) -> None:
    """POST the validation request; raise 400 ``ValidationError`` unless the token echoes."""
    token = make_token()
    target = validation_url(url, token)
    try:
        async with session.post(
            # encoded=True: the token is already percent-encoded exactly once.
            URL(target, encoded=True),
            data=b"",
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=limit_seconds),
            allow_redirects=False,
            ssl=False,
        ) as resp:
            raw = await resp.read()
            status, ctype = resp.status, resp.headers.get("Content-Type", "")
    except TimeoutError as exc:
        log.info("validation of %s timed out", _safe(url))
        raise GraphError(400, "ValidationError", TIMED_OUT) from exc
    except aiohttp.ClientError as exc:
        log.info("validation of %s failed: %s", _safe(url), type(exc).__name__)
        raise GraphError(400, "ValidationError", FAILED) from exc
    try:
        echoed = raw.decode("utf-8")
    except UnicodeDecodeError:
        echoed = None
    if status != 200 or echoed != token or not ctype.lower().startswith("text/plain"):
        log.info(
            "validation of %s failed: status %s, token %s, content-type %s",
            _safe(url),
            status,
            "matched" if echoed == token else "wrong",
            ctype,
        )
        raise GraphError(400, "ValidationError", FAILED)


def _safe(url: str) -> str:
    """The URL without its query, which may hold a function key."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
