"""A multi-tenant app signs in to each tenant with its secret, its certificate or a federated managed identity.

Against the simulator's identity platform: each way gets a token of tenant B from B's own
authority through TenantGraphs, cached and fresh; a tenant whose consent was revoked refuses
each way with the same AADSTS error, which suspends it (shared/model/tenant.py lost_access).
The federated way reads the managed identity from the environment as App Service gives it
(IDENTITY_ENDPOINT, IDENTITY_HEADER); the token endpoint refuses its assertion forged, expired,
for another audience, or of a subject the app does not trust.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio
from azure.core.exceptions import ClientAuthenticationError
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.graphsim.config import SimConfig
from devtools.graphsim.server import SimHandle, start
from shared.app.credentials import TenantsCredentials, tenants_credentials
from shared.app.tenant_graphs import TenantGraphs
from shared.config.settings import Settings
from shared.graph import graph_scope
from shared.model.changes import SourceRegistry
from shared.model.tenant import lost_access
from shared.tenants.access import refused
from tests.functional.test_sharepoint import PASSWORD, make_certificate

B = str(uuid.UUID(int=0xB0B))
METHODS = ("secret", "certificate", "federated")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Sim:
    handle: SimHandle
    http: aiohttp.ClientSession
    certificate_path: Path

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.handle.control_url + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    def settings(self, method: str) -> Settings:
        env = {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "NOTIFICATION_URL": "https://hooks.example.com/api/notifications",
            "LIFECYCLE_NOTIFICATION_URL": "https://hooks.example.com/api/lifecycle",
            "TENANT_MODE": "multi",
            "GRAPH_BASE_URL": self.handle.graph_url,
            "AZURE_AUTHORITY_HOST": self.handle.authority,
            "AZURE_AUTHORITY_CA_FILE": self.handle.ca_file,
            "GRAPH_CLIENT_ID": self.handle.config.client_id,
            # As infra/app/settings.bicep sets it: the deployment's user-assigned identity, whatever the method.
            "AZURE_CLIENT_ID": self.handle.config.managed_identity_client_id,
        }
        if method == "secret":
            env["GRAPH_CLIENT_SECRET"] = self.handle.config.client_secret
        elif method == "certificate":
            env |= {
                "GRAPH_CLIENT_CERTIFICATE": str(self.certificate_path),
                "GRAPH_CLIENT_CERTIFICATE_PASSWORD": PASSWORD,
            }
        return Settings.from_env(env)

    async def token_request(self, assertion: str, tenant: str = B) -> tuple[int, dict[str, Any]]:
        """A client_assertion grant at ``tenant``'s token endpoint, by hand."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self.handle.config.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": "https://graph.microsoft.com/.default",
        }
        url = f"{self.handle.authority}/{tenant}/oauth2/v2.0/token"
        async with self.http.post(url, data=form, ssl=False) as response:
            return response.status, await response.json()

    async def managed_token(
        self, resource: str = "api://AzureADTokenExchange", **headers: str
    ) -> aiohttp.ClientResponse:
        query = {
            "api-version": "2019-08-01",
            "resource": resource,
            "client_id": self.handle.config.managed_identity_client_id,
        }
        return await self.http.get(
            self.handle.identity_endpoint,
            params=query,
            headers={"X-IDENTITY-HEADER": self.handle.identity_header} | headers,
        )


@pytest_asyncio.fixture
async def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sim]:
    """The simulator with tenant B consented, the app's certificate registered, and its managed identity in the env."""
    handle = await start(SimConfig(state_dir=str(tmp_path / "sim")))
    # Where azure-identity's ManagedIdentityCredential finds App Service's identity endpoint.
    monkeypatch.setenv("IDENTITY_ENDPOINT", handle.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", handle.identity_header)
    certificate = make_certificate(tmp_path / "graph-app.pfx")
    async with aiohttp.ClientSession() as http:
        found = Sim(handle, http, certificate.path)
        await found.control("POST", "/tenants", {"tenant": B, "consented": True})
        await found.control("POST", "/sharepoint/certificates", {"pem": certificate.public_pem})
        try:
            yield found
        finally:
            await handle.close()


async def _graphs(sim: Sim, method: str) -> tuple[TenantGraphs, TenantsCredentials]:
    settings = sim.settings(method)
    credentials = await tenants_credentials(settings)
    graphs = TenantGraphs(
        credentials(),
        graph_scope(settings.graph_base_url),
        settings.graph_base_url,
        lambda graph: SourceRegistry([]),
        lambda tenant, graph: pytest.fail("no reconciler is asked for"),
        fresh=credentials,
    )
    return graphs, credentials


@pytest.mark.parametrize("method", METHODS)
async def test_each_way_of_signing_in_gets_a_token_of_tenant_b_from_bs_authority(sim: Sim, method: str) -> None:
    graphs, credentials = await _graphs(sim, method)
    try:
        await graphs.token(B)
        await graphs.token(B, fresh=True)
        credential = credentials()
        try:
            token = await credential.get_token(graph_scope(sim.handle.graph_url), tenant_id=B)
        finally:
            await credential.close()
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert (claims["tid"], claims["appid"]) == (B, sim.handle.config.client_id)
        assert claims["appidacr"] == ("1" if method == "secret" else "2")  # an assertion, not a secret
        # Graph itself takes the token: a call in tenant B's name answers.
        async with sim.http.get(
            f"{sim.handle.graph_url}/subscriptions", headers={"Authorization": f"Bearer {token.token}"}
        ) as response:
            assert response.status == 200, await response.text()
        identity = await sim.control("GET", "/identity/federated")
        assert (identity["tokensIssued"] > 0) == (method == "federated")
    finally:
        await graphs.close()
        await credentials.close()


@pytest.mark.parametrize("method", METHODS)
async def test_a_revoked_tenant_refuses_each_way_with_the_aadsts_code_that_suspends_it(sim: Sim, method: str) -> None:
    graphs, credentials = await _graphs(sim, method)
    try:
        await graphs.token(B)
        await sim.control("POST", f"/tenants/{B}/revoke", {"code": 65001})
        with pytest.raises(ClientAuthenticationError) as caught:
            await graphs.token(B, fresh=True)
        assert refused(caught.value) == "AADSTS65001"
        assert lost_access(str(caught.value)) == "AADSTS65001"
    finally:
        await graphs.close()
        await credentials.close()


async def test_the_identity_endpoint_answers_only_with_its_header_and_for_its_identity(sim: Sim) -> None:
    async with await sim.managed_token() as response:
        assert response.status == 200
        body = await response.json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "api://AzureADTokenExchange"
    assert claims["sub"] == sim.handle.config.managed_identity_object_id
    assert claims["iss"] == f"{sim.handle.authority}/{sim.handle.config.tenant_id}/v2.0"
    async with await sim.managed_token(**{"X-IDENTITY-HEADER": "guessed"}) as response:
        assert response.status == 401
    async with sim.http.get(
        sim.handle.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"},
        headers={"X-IDENTITY-HEADER": sim.handle.identity_header},
    ) as response:
        assert response.status == 400  # no client_id: there is no system-assigned identity


async def _managed_assertion(sim: Sim, resource: str = "api://AzureADTokenExchange") -> str:
    async with await sim.managed_token(resource) as response:
        assert response.status == 200
        return str((await response.json())["access_token"])


async def test_the_token_endpoint_takes_the_managed_identitys_token_as_the_apps_assertion(sim: Sim) -> None:
    status, body = await sim.token_request(await _managed_assertion(sim))
    assert status == 200, body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["tid"], claims["aud"]) == (B, "https://graph.microsoft.com")


async def test_a_forged_assertion_is_refused(sim: Sim) -> None:
    genuine = await _managed_assertion(sim)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers=jwt.get_unverified_header(genuine))
    status, body = await sim.token_request(forged)
    assert (status, body["error_codes"]) == (401, [700027])


async def test_an_expired_assertion_is_refused(sim: Sim) -> None:
    await sim.control("PUT", "/identity/federated", {"lifetimeSeconds": -120})
    status, body = await sim.token_request(await _managed_assertion(sim))
    assert (status, body["error_codes"]) == (401, [700024])


async def test_an_assertion_for_another_audience_is_refused(sim: Sim) -> None:
    status, body = await sim.token_request(await _managed_assertion(sim, "https://management.azure.com"))
    assert (status, body["error_codes"]) == (401, [700212])


async def test_an_identity_the_app_does_not_trust_gets_no_token(sim: Sim) -> None:
    await sim.control("PUT", "/identity/federated", {"subjects": []})
    status, body = await sim.token_request(await _managed_assertion(sim))
    assert (status, body["error_codes"]) == (401, [700213])
    graphs, credentials = await _graphs(sim, "federated")
    try:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700213") as caught:
            await graphs.token(B)
        assert refused(caught.value) is None  # the app's own setup, not the tenant's withdrawal
    finally:
        await graphs.close()
        await credentials.close()


async def test_an_assertion_is_good_in_no_tenant_that_has_not_consented(sim: Sim) -> None:
    stranger = str(uuid.UUID(int=0xDEAD))
    await sim.control("POST", "/tenants", {"tenant": stranger, "consented": False})
    status, body = await sim.token_request(await _managed_assertion(sim), tenant=stranger)
    assert (status, body["error_codes"]) == (400, [65001])


async def test_a_multi_tenant_worker_without_a_secret_signs_in_by_its_managed_identity_and_suspends_on_revocation(
    stack_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devtools.simctl import TenantControl
    from shared.app.worker import build_worker
    from shared.clock import utcnow
    from shared.model.names import TENANTS_TABLE
    from shared.model.tenant import ACTIVE, SUSPENDED, new_tenant
    from shared.stores.clients import table_client
    from shared.stores.tenants import TenantStore
    from tests.functional.stacks import DRIVE, RESOURCE

    stack = await stack_factory(
        env={
            "TENANT_MODE": "multi",
            "GRAPH_SUBSCRIPTIONS": f'[{{"resource": "{RESOURCE}"}}]',
            "GRAPH_CLIENT_SECRET": "",
            "AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
        }
    )
    info = stack.sim.info
    assert stack.worker.settings.client_secret is None
    monkeypatch.setenv("IDENTITY_ENDPOINT", str(info["identity_endpoint"]))
    monkeypatch.setenv("IDENTITY_HEADER", str(info["identity_header"]))
    # azure-identity finds the identity endpoint when the credential is made: a worker made now, as the host would.
    stack.others.append(stack.worker)
    stack.worker = await build_worker(stack.env)
    async with TenantControl(stack.sim.control_url, None) as home, TenantControl(stack.sim.control_url, B) as tenant:
        await home.call("POST", "/tenants", {"tenant": B, "consented": True})
        await tenant.create_drive(DRIVE)
        async with table_client(stack.connection, TENANTS_TABLE) as client:
            store = TenantStore(client)
            await store.setup()
            assert await store.add(new_tenant(B, "tenant b", utcnow(), status=ACTIVE))
            await stack.worker.renew(utcnow())
            subscriptions = await tenant.call("GET", f"/tenants/{B}")
            assert subscriptions["subscriptionsActive"] == 1  # created at B's Graph, in B's name
            await home.call("POST", f"/tenants/{B}/revoke", {"code": 7000112})
            await stack.worker.renew(utcnow() + timedelta(hours=1, minutes=1))
            stored = await store.get(B)
            assert stored is not None
            assert (stored.tenant.status, stored.tenant.reason) == (SUSPENDED, "AADSTS7000112")
