"""The admin consent's state: signed by the app, read back only as signed, refused once expired."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.errors import ConsentStateError, ExpiredConsentStateError
from shared.tenants.state import AUDIENCE, STATE_LIFETIME, new_state, read_state, sign_state

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


def test_a_signed_state_reads_back_with_its_name_id_and_expiry():
    state = new_state("Contoso Ltd", NOW)
    token = sign_state(state, KEY)

    assert read_state(token, KEY, NOW + timedelta(minutes=59)) == state
    assert state.expires_at - NOW == STATE_LIFETIME == timedelta(hours=1)
    assert "Contoso" not in token.split(".")[0]  # the header carries no claim


def test_each_state_has_its_own_id():
    assert new_state("", NOW).state_id != new_state("", NOW).state_id


def test_a_longer_lifetime_is_cut_to_one_hour():
    assert new_state("", NOW, timedelta(days=1)).expires_at == NOW + timedelta(hours=1)


def test_a_state_without_a_name_reads_back_with_an_empty_one():
    assert read_state(sign_state(new_state("", NOW), KEY), KEY, NOW).name == ""


def test_an_expired_state_is_refused_as_expired_at_its_expiry_and_after():
    token = sign_state(new_state("x", NOW), KEY)

    with pytest.raises(ExpiredConsentStateError):
        read_state(token, KEY, NOW + STATE_LIFETIME)
    with pytest.raises(ExpiredConsentStateError):
        read_state(token, KEY, NOW + timedelta(days=3))


def test_a_state_signed_with_another_key_is_refused_and_not_as_expired():
    token = sign_state(new_state("x", NOW), OTHER_KEY)

    with pytest.raises(ConsentStateError) as caught:
        read_state(token, KEY, NOW)
    assert not isinstance(caught.value, ExpiredConsentStateError)


def _forge(token: str, **changes: object) -> str:
    """The token with its payload changed and the signature kept, as a forger would send it."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda good: _forge(good, name="Fabrikam"), id="payload changed"),
        pytest.param(lambda good: _forge(good, exp=2_000_000_000), id="expiry extended"),
        pytest.param(
            lambda good: good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), id="signature changed"
        ),
        pytest.param(lambda good: "12345", id="not a token"),
        pytest.param(lambda good: "a.b.c", id="three dots of nothing"),
        pytest.param(lambda good: "x" * 5000, id="far too long"),
        pytest.param(
            lambda good: jwt.encode({"aud": AUDIENCE, "jti": "j", "iat": 1, "exp": 2_000_000_000}, OTHER_KEY, "HS256"),
            id="well formed, another key",
        ),
        pytest.param(
            lambda good: jwt.encode({"aud": AUDIENCE, "jti": "j", "iat": 1, "exp": 2_000_000_000}, None, "none"),
            id="alg none",
        ),
        pytest.param(
            lambda good: jwt.encode({"aud": "other", "jti": "j", "iat": 1, "exp": 2_000_000_000}, KEY, "HS256"),
            id="another audience",
        ),
        pytest.param(
            lambda good: jwt.encode({"aud": AUDIENCE, "iat": 1, "exp": 2_000_000_000}, KEY, "HS256"), id="no id"
        ),
        pytest.param(lambda good: jwt.encode({"aud": AUDIENCE, "jti": "j", "iat": 1}, KEY, "HS256"), id="no expiry"),
    ],
)
def test_a_forged_or_unreadable_state_is_refused(token):
    good = sign_state(new_state("Contoso", NOW), KEY)

    with pytest.raises(ConsentStateError) as caught:
        read_state(token(good), KEY, NOW)
    assert not isinstance(caught.value, ExpiredConsentStateError)
