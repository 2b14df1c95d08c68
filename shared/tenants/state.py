"""The ``state`` of an admin consent: signed by the app, short-lived, redeemable once (pure).

The identity platform hands ``state`` back unchanged with its reply, so the reply is only
trusted when ``state`` is a token this app signed (HS256, with the key ConsentStateStore
keeps) and not past its expiry. One use is enforced by the store, on the token's id (jti).
The token carries the name the operator gave the tenant on ``/api/consent/start``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import ConsentStateError, ExpiredConsentStateError

ALGORITHM = "HS256"
# Sets the token apart from any other the same key might sign one day.
AUDIENCE = "graphhooks:consent"
# An admin signs in (MFA included) and reads the permissions within this time.
STATE_LIFETIME = timedelta(hours=1)
KEY_BYTES = 32
# A signed state is some 250 characters with the longest name; anything far longer is not one.
MAX_STATE_LENGTH = 4096


@dataclass(frozen=True)
class ConsentState:
    """What a state carries: its id, the tenant's name (may be empty), when it was signed and expires."""

    state_id: str
    name: str
    issued_at: datetime
    expires_at: datetime


def new_state(name: str, now: datetime, lifetime: timedelta = STATE_LIFETIME) -> ConsentState:
    """A state for one consent, with a random id; ``lifetime`` is at most STATE_LIFETIME."""
    lifetime = min(lifetime, STATE_LIFETIME)
    issued = now.replace(microsecond=0)
    return ConsentState(uuid.uuid4().hex, name, issued, issued + lifetime)


def sign_state(state: ConsentState, key: bytes) -> str:
    """The state as the compact token the consent URL carries."""
    import jwt

    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "jti": state.state_id,
        "iat": int(state.issued_at.timestamp()),
        "exp": int(state.expires_at.timestamp()),
    }
    if state.name:
        claims["name"] = state.name
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def read_state(token: str, key: bytes, now: datetime) -> ConsentState:
    """The state a token carries; ConsentStateError when this app did not sign it as it is,
    ExpiredConsentStateError when it did but ``now`` is past its expiry."""
    import jwt

    if not token or len(token) > MAX_STATE_LENGTH:
        raise ConsentStateError("the state is empty or too long to be one this app signed")
    try:
        # The expiry is checked below against ``now``, not the process clock, so a test can pass its own.
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["jti", "iat", "exp"]},
        )
    except jwt.PyJWTError:
        raise ConsentStateError("the state is not one this app signed, or it was altered") from None
    state_id, issued, expires, name = claims.get("jti"), claims.get("iat"), claims.get("exp"), claims.get("name", "")
    if not isinstance(state_id, str) or not state_id or not isinstance(name, str):
        raise ConsentStateError("the state lacks its id")
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise ConsentStateError("the state lacks its times")
    state = ConsentState(state_id, name, _moment(issued), _moment(expires))
    if now >= state.expires_at:
        raise ExpiredConsentStateError(f"the state expired at {state.expires_at.isoformat()}")
    return state


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
