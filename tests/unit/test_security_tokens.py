"""Validation tokens: every rejection reason in a test of its own, and the key cache's bounds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.graphsim.rich import ValidationTokenSigner, forge
from shared.errors import AuthorityUnavailableError, ValidationTokenError
from shared.security.tokens import SigningKeys, TokenGate, ValidationTokenChecker, openid_configuration_url

TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "7f1b2b5c-1111-4c3c-9e2e-0a0b0c0d0e0f"
AUTHORITY = "https://login.microsoftonline.com"
JWKS_URI = "https://login.microsoftonline.com/common/discovery/v2.0/keys"


class Authority:
    """The OpenID configuration and JWKS, counting fetches."""

    def __init__(self, *signers: ValidationTokenSigner) -> None:
        self.signers = list(signers)
        self.fetched: list[str] = []
        self.down = False

    async def fetch(self, url: str) -> dict[str, Any]:
        self.fetched.append(url)
        if self.down:
            raise ConnectionError("authority unreachable")
        if url == openid_configuration_url(AUTHORITY):
            return {"jwks_uri": JWKS_URI, "issuer": f"{AUTHORITY}/{{tenantid}}/v2.0"}
        if url == JWKS_URI:
            return {"keys": [s.jwk() for s in self.signers]}
        raise AssertionError(f"unexpected fetch {url}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def signer() -> ValidationTokenSigner:
    return ValidationTokenSigner()


@pytest.fixture
def authority(signer: ValidationTokenSigner) -> Authority:
    return Authority(signer)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def checker(authority: Authority, clock: Clock) -> ValidationTokenChecker:
    return ValidationTokenChecker(SigningKeys(authority.fetch, AUTHORITY, clock=clock), CLIENT_ID, TENANT)


async def reason(checker: ValidationTokenChecker, token: str) -> str:
    with pytest.raises(ValidationTokenError) as caught:
        await checker.check(token)
    return caught.value.reason


async def test_a_v1_token_from_graph_is_accepted(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    claims = await checker.check(signer.token(TENANT, CLIENT_ID, version=1))
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"


async def test_a_v2_token_from_graph_is_accepted(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    claims = await checker.check(signer.token(TENANT, CLIENT_ID, version=2))
    assert claims["iss"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"


async def test_a_forged_signature_is_rejected(checker: ValidationTokenChecker, signer: ValidationTokenSigner) -> None:
    assert await reason(checker, forge(signer.token(TENANT, CLIENT_ID))) == "bad signature"


async def test_a_key_id_the_authority_never_published_is_rejected(
    checker: ValidationTokenChecker, authority: Authority
) -> None:
    stranger = ValidationTokenSigner()
    assert await reason(checker, stranger.token(TENANT, CLIENT_ID)) == "unknown signing key"


async def test_an_expired_token_is_rejected(checker: ValidationTokenChecker, signer: ValidationTokenSigner) -> None:
    token = signer.token(TENANT, CLIENT_ID, now=time.time() - 7200, lifetime=3600)
    assert await reason(checker, token) == "expired"


async def test_a_token_for_another_app_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    token = signer.token(TENANT, "00000000-0000-0000-0000-00000000dead")
    assert await reason(checker, token) == "wrong audience"


async def test_a_token_from_another_issuer_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    token = signer.token(TENANT, CLIENT_ID, iss="https://evil.example.com/issuer/")
    assert await reason(checker, token) == "wrong issuer"


async def test_an_issuer_of_another_tenant_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    token = signer.token(TENANT, CLIENT_ID, iss="https://sts.windows.net/11111111-2222-3333-4444-555555555555/")
    assert await reason(checker, token) == "wrong issuer"


@pytest.mark.parametrize("version", [1, 2])
async def test_a_token_graph_minted_for_another_tenant_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner, version: int
) -> None:
    # Signed by the authority's key, its tid and issuer agree: only the tenant is not ours.
    token = signer.token(OTHER_TENANT, CLIENT_ID, version=version)
    assert await reason(checker, token) == "wrong issuer"


async def test_the_tenant_setting_may_be_written_in_upper_case(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    checker = ValidationTokenChecker(SigningKeys(authority.fetch, AUTHORITY), CLIENT_ID, TENANT.upper())
    for version in (1, 2):
        await checker.check(signer.token(TENANT, CLIENT_ID, version=version))


async def test_a_v1_token_from_another_caller_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    token = signer.token(TENANT, CLIENT_ID, version=1, appid="11111111-0000-0000-0000-000000000000")
    assert await reason(checker, token) == "not from Graph change tracking"


async def test_a_v2_token_from_another_caller_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    token = signer.token(TENANT, CLIENT_ID, version=2, azp="11111111-0000-0000-0000-000000000000")
    assert await reason(checker, token) == "not from Graph change tracking"


async def test_a_token_without_expiry_is_rejected(
    checker: ValidationTokenChecker, signer: ValidationTokenSigner
) -> None:
    assert (await reason(checker, signer.token(TENANT, CLIENT_ID, exp=None))).startswith("invalid")


async def test_a_token_that_is_not_a_jwt_is_rejected(checker: ValidationTokenChecker) -> None:
    assert await reason(checker, "not-a-jwt") == "malformed"


async def test_national_cloud_issuers_come_from_settings(authority: Authority, signer: ValidationTokenSigner) -> None:
    issuers = ["https://login.microsoftonline.us/{tenant}/v2.0"]
    checker = ValidationTokenChecker(SigningKeys(authority.fetch, AUTHORITY), CLIENT_ID, TENANT, issuers)
    us = signer.token(TENANT, CLIENT_ID, version=2, iss=f"https://login.microsoftonline.us/{TENANT}/v2.0")
    await checker.check(us)
    assert await reason(checker, signer.token(TENANT, CLIENT_ID, version=1)) == "wrong issuer"


async def test_keys_are_fetched_once_then_served_from_the_cache(
    checker: ValidationTokenChecker, authority: Authority, signer: ValidationTokenSigner
) -> None:
    for version in (1, 2, 1):
        await checker.check(signer.token(TENANT, CLIENT_ID, version=version))
    assert authority.fetched == [openid_configuration_url(AUTHORITY), JWKS_URI]


async def test_unknown_key_ids_refetch_at_most_once_every_ten_seconds(
    checker: ValidationTokenChecker, authority: Authority, signer: ValidationTokenSigner, clock: Clock
) -> None:
    await checker.check(signer.token(TENANT, CLIENT_ID))
    stranger = ValidationTokenSigner()
    for _ in range(20):
        await reason(checker, stranger.token(TENANT, CLIENT_ID))
    assert len(authority.fetched) == 2  # the forged ids all fell within 10 s of the first fetch
    clock.now += 10
    await reason(checker, stranger.token(TENANT, CLIENT_ID))
    assert len(authority.fetched) == 4


async def test_a_rotated_key_is_found_by_refetching(
    checker: ValidationTokenChecker, authority: Authority, signer: ValidationTokenSigner, clock: Clock
) -> None:
    await checker.check(signer.token(TENANT, CLIENT_ID))
    rotated = ValidationTokenSigner()
    authority.signers.append(rotated)
    clock.now += 11
    await checker.check(rotated.token(TENANT, CLIENT_ID))


async def test_an_unreachable_authority_is_reported_as_unavailable(
    checker: ValidationTokenChecker, authority: Authority, signer: ValidationTokenSigner
) -> None:
    authority.down = True
    with pytest.raises(AuthorityUnavailableError):
        await checker.check(signer.token(TENANT, CLIENT_ID))


async def test_a_token_seen_before_is_not_verified_again_but_still_expires(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    wall = Clock()
    wall.now = time.time()
    checker = ValidationTokenChecker(SigningKeys(authority.fetch, AUTHORITY), CLIENT_ID, TENANT, clock=wall)
    token = signer.token(TENANT, CLIENT_ID, lifetime=600)
    first = await checker.check(token)
    assert await checker.check(token) == first
    wall.now += 600 + 61  # past its expiry and the leeway
    assert await reason(checker, token) == "expired"


def gate(authority: Authority, tenant: str | None = TENANT) -> TokenGate:
    return TokenGate(CLIENT_ID, tenant, AUTHORITY, fetch=authority.fetch)


def item(tenant: object = TENANT) -> dict[str, Any]:
    return {"subscriptionId": "s1", "changeType": "created", "tenantId": tenant, "encryptedContent": {}}


async def test_the_gate_passes_our_tenants_tokens_and_notifications(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    tokens = [signer.token(TENANT, CLIENT_ID, version=1), signer.token(TENANT, CLIENT_ID, version=2)]
    assert await gate(authority).refusal(tokens, [item(), item(TENANT.upper())]) is None


async def test_the_gate_refuses_a_notification_of_another_tenant_under_a_valid_token(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    tokens = [signer.token(TENANT, CLIENT_ID)]
    assert await gate(authority).refusal(tokens, [item(), item(OTHER_TENANT)]) == "notification of another tenant"
    assert await gate(authority).refusal(tokens, [item(42)]) == "notification of another tenant"
    assert await gate(authority).refusal(tokens, [item(None)]) is None  # none named: the token speaks for it


async def test_the_gate_refuses_a_token_of_another_tenant(authority: Authority, signer: ValidationTokenSigner) -> None:
    # Graph makes one token per app and tenant among a batch's items: the other tenant's token alone fails it.
    tokens = [signer.token(TENANT, CLIENT_ID), signer.token(OTHER_TENANT, CLIENT_ID, version=2)]
    assert await gate(authority).refusal(tokens, [item()]) == "wrong issuer"


@pytest.mark.parametrize("tenant", [None, "", "contoso.onmicrosoft.com"])
async def test_without_a_tenant_id_the_gate_refuses_naming_the_setting(
    authority: Authority, signer: ValidationTokenSigner, tenant: str | None
) -> None:
    refusal = await gate(authority, tenant).refusal([signer.token(TENANT, CLIENT_ID)], [item()])
    assert refusal is not None and "GRAPH_TENANT_ID" in refusal
    assert authority.fetched == []  # nothing to check against: no key is fetched


# --- TENANT_MODE=multi: each batch's tokens are its own tenants' -----------------------------------


def multi_gate(authority: Authority) -> TokenGate:
    return TokenGate(CLIENT_ID, None, AUTHORITY, fetch=authority.fetch, multi=True)


async def test_a_multi_tenant_gate_passes_each_tenants_own_tokens(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    tokens = [signer.token(TENANT, CLIENT_ID), signer.token(OTHER_TENANT, CLIENT_ID, version=2)]
    assert await multi_gate(authority).refusal(tokens, [item(TENANT), item(OTHER_TENANT.upper())]) is None


async def test_a_multi_tenant_gate_refuses_a_token_of_a_tenant_the_batch_does_not_name(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    refusal = await multi_gate(authority).refusal([signer.token(OTHER_TENANT, CLIENT_ID)], [item(TENANT)])
    assert refusal == "token of a tenant the batch does not name"


async def test_a_multi_tenant_gate_refuses_a_batch_with_a_tenant_no_token_vouches_for(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    refusal = await multi_gate(authority).refusal([signer.token(TENANT, CLIENT_ID)], [item(TENANT), item(OTHER_TENANT)])
    assert refusal == "a tenant of the batch has no validation token"


async def test_a_token_claiming_one_tenant_but_issued_by_another_is_refused(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    forged = signer.token(OTHER_TENANT, CLIENT_ID, tid=TENANT)  # OTHER_TENANT's issuer, TENANT's tid
    assert await multi_gate(authority).refusal([forged], [item(TENANT)]) == "wrong issuer"


async def test_a_multi_tenant_batch_item_without_a_tenant_id_is_refused(
    authority: Authority, signer: ValidationTokenSigner
) -> None:
    refusal = await multi_gate(authority).refusal([signer.token(TENANT, CLIENT_ID)], [item(None)])
    assert refusal == "notification without a tenant id"
