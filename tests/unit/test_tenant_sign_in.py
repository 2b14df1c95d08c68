"""How a multi-tenant app signs in: which credential the settings choose (no network)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from devtools.graphsim.rich import make_certificate
from shared.app.credentials import (
    CERTIFICATE,
    FEDERATED,
    SECRET,
    FederatedCredential,
    ManagedIdentityAssertion,
    tenants_credentials,
    tenants_sign_in,
    token_exchange_scope,
)
from shared.config.settings import Settings
from shared.errors import InvalidSettingError, MissingSettingError

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "NOTIFICATION_URL": "https://hooks.example.com/api/notifications",
    "LIFECYCLE_NOTIFICATION_URL": "https://hooks.example.com/api/lifecycle",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000aa",
    "TENANT_MODE": "multi",
}
UAMI = "00000000-0000-0000-0000-0000000000bb"


def settings(**extra: str) -> Settings:
    return Settings.from_env(BASE | extra)


def pem_file(path: Path) -> Path:
    """A new key and self-signed certificate in one PEM file (made for the test, never checked in)."""
    path.write_bytes(make_certificate("multi-tenant-test-app").pem)
    return path


def test_the_secret_signs_in_when_set_even_beside_a_managed_identity() -> None:
    assert tenants_sign_in(settings(GRAPH_CLIENT_SECRET="s", AZURE_CLIENT_ID=UAMI)) == SECRET


def test_the_certificate_signs_in_without_a_secret() -> None:
    assert tenants_sign_in(settings(GRAPH_CLIENT_CERTIFICATE="/x.pem", AZURE_CLIENT_ID=UAMI)) == CERTIFICATE


def test_a_user_assigned_managed_identity_alone_signs_in_as_a_federated_credential() -> None:
    assert tenants_sign_in(settings(AZURE_CLIENT_ID=UAMI)) == FEDERATED


def test_none_of_the_three_is_refused_naming_each_setting() -> None:
    with pytest.raises(MissingSettingError) as caught:
        tenants_sign_in(settings())
    for name in ("GRAPH_CLIENT_SECRET", "GRAPH_CLIENT_CERTIFICATE", "AZURE_CLIENT_ID"):
        assert name in str(caught.value)


def test_a_secret_and_a_certificate_together_are_refused() -> None:
    with pytest.raises(InvalidSettingError, match=r"GRAPH_CLIENT_CERTIFICATE.*not both"):
        settings(GRAPH_CLIENT_SECRET="s", GRAPH_CLIENT_CERTIFICATE="/x.pem")


def test_the_certificate_is_refused_in_single_mode_which_does_not_change() -> None:
    with pytest.raises(InvalidSettingError, match=r"GRAPH_CLIENT_CERTIFICATE.*TENANT_MODE=multi"):
        settings(TENANT_MODE="single", GRAPH_TENANT_ID=UAMI, GRAPH_CLIENT_CERTIFICATE="/x.pem")
    single = settings(TENANT_MODE="single", GRAPH_TENANT_ID=UAMI, GRAPH_CLIENT_SECRET="s")
    assert (single.client_certificate, single.client_certificate_password) == (None, None)


def test_the_certificate_and_its_password_are_read() -> None:
    read = settings(GRAPH_CLIENT_CERTIFICATE="/app.pfx", GRAPH_CLIENT_CERTIFICATE_PASSWORD="pw")
    assert (read.client_certificate, read.client_certificate_password) == ("/app.pfx", "pw")


@pytest.mark.parametrize(
    ("authority", "scope"),
    [
        (None, "api://AzureADTokenExchange/.default"),
        ("https://login.microsoftonline.com", "api://AzureADTokenExchange/.default"),
        ("https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov/.default"),
        ("https://login.chinacloudapi.cn/", "api://AzureADTokenExchangeChina/.default"),
    ],
)
def test_the_token_exchange_audience_is_the_clouds(authority: str | None, scope: str) -> None:
    extra = {"AZURE_CLIENT_ID": UAMI} | ({"AZURE_AUTHORITY_HOST": authority} if authority else {})
    assert token_exchange_scope(settings(**extra)) == scope


async def test_each_method_makes_a_new_credential_of_its_kind_per_call(tmp_path: Path) -> None:
    from azure.identity.aio import CertificateCredential, ClientSecretCredential

    cases: list[tuple[Settings, type]] = [
        (settings(GRAPH_CLIENT_SECRET="s"), ClientSecretCredential),
        (settings(GRAPH_CLIENT_CERTIFICATE=str(pem_file(tmp_path / "app.pem"))), CertificateCredential),
        (settings(AZURE_CLIENT_ID=UAMI), FederatedCredential),
    ]
    for chosen, kind in cases:
        credentials = await tenants_credentials(chosen)
        first, second = credentials(), credentials()
        try:
            assert isinstance(first, kind) and isinstance(second, kind)
            assert first is not second  # a fresh check gets an empty cache
        finally:
            await first.close()
            await second.close()
            await credentials.close()


async def test_a_bad_certificate_is_named_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(InvalidSettingError, match="GRAPH_CLIENT_CERTIFICATE"):
        await tenants_credentials(settings(GRAPH_CLIENT_CERTIFICATE=str(bad)))


class CountingIdentity:
    """A managed identity credential's stand-in: counts its token requests."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(0)
        return AccessToken(f"mi-token-{self.calls}", int(time.time()) + self.lifetime)

    async def close(self) -> None:
        pass


async def test_the_assertion_is_fetched_once_while_it_lives_and_again_near_its_end() -> None:
    identity = CountingIdentity(lifetime=3600)
    assertion = ManagedIdentityAssertion(identity, "api://AzureADTokenExchange/.default")
    assert assertion() == ""
    await asyncio.gather(*(assertion.ensure() for _ in range(20)))  # many tenants at once: one request
    await assertion.ensure()
    assert (identity.calls, assertion()) == (1, "mi-token-1")
    short = CountingIdentity(lifetime=120)  # less left than the margin: replaced before it is handed over
    near_end = ManagedIdentityAssertion(short, "api://AzureADTokenExchange/.default")
    await near_end.ensure()
    await near_end.ensure()
    assert (short.calls, near_end()) == (2, "mi-token-2")
