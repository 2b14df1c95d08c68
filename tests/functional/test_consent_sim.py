"""Onboarding through the simulator's admin consent endpoint, end to end in process.

The app's consent flow (built as function_app builds it) sends the admin to the
simulator's identity platform over real HTTPS (its CA file); the simulator's redirect
comes back to the callback, which registers the tenant and queues its envelope; the
queue trigger then creates that tenant's subscriptions at Graph. A denial at the
identity platform registers nothing.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from devtools.simctl import TenantControl
from shared.app.consent import Consent, build_consent
from shared.clock import utcnow
from shared.model.names import NOTIFICATIONS_QUEUE, SUBSCRIPTIONS_TABLE, TENANTS_TABLE
from shared.model.notifications import Envelope
from shared.model.tenant import ACTIVE
from shared.stores.clients import queue_client, table_client
from shared.stores.subscriptions import SubscriptionStore
from shared.stores.tenants import TenantStore
from shared.tenants.pages import Page
from tests.functional.stacks import DRIVE, RESOURCE, Stack

NEW = str(uuid.UUID(int=0xFEED))


@pytest.fixture
async def multi(stack_factory: Any) -> AsyncIterator[tuple[Stack, Consent, TenantControl]]:
    """A multi-mode stack whose simulator knows tenant NEW (with a drive) before it consented."""
    stack = await stack_factory(
        env={"TENANT_MODE": "multi", "GRAPH_SUBSCRIPTIONS": json.dumps([{"resource": RESOURCE}])}
    )
    await stack.control.call("POST", "/tenants", {"tenant": NEW, "consented": False})
    consent = await build_consent(stack.env)
    async with TenantControl(stack.sim.control_url, NEW) as of_new:
        await of_new.create_drive(DRIVE)
        try:
            yield stack, consent, of_new
        finally:
            await consent.close()


async def through_the_identity_platform(stack: Stack, start: Page, **extra: str) -> tuple[int, dict[str, str]]:
    """Follow the start's 302 to the simulator's admin consent endpoint over HTTPS; return its redirect's query."""
    assert start.status == 302, start.body
    location = start.headers["Location"]
    authority = stack.env["AZURE_AUTHORITY_HOST"].rstrip("/")
    assert location.startswith(f"{authority}/organizations/v2.0/adminconsent?")
    trusted = ssl.create_default_context(cafile=stack.env["AZURE_AUTHORITY_CA_FILE"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(location, params=extra, ssl=trusted, allow_redirects=False) as answer,
    ):
        status, back = answer.status, urlsplit(answer.headers.get("Location", ""))
    assert f"{back.scheme}://{back.netloc}{back.path}" == stack.env["NOTIFICATION_URL"].replace(
        "/api/notifications", "/api/consent"
    )
    return status, dict(parse_qsl(back.query))


async def registered(stack: Stack, tenant: str) -> Any:
    async with table_client(stack.connection, TENANTS_TABLE) as client:
        await TenantStore(client).setup()
        found = await TenantStore(client).get(tenant)
    return found.tenant if found is not None else None


async def queued(stack: Stack) -> list[Any]:
    """The messages on graph-notifications, left in place."""
    async with queue_client(stack.connection, NOTIFICATIONS_QUEUE) as client:
        try:
            return list(await client.peek_messages(max_messages=32))
        except Exception:  # noqa: BLE001 - a queue never written to does not exist yet
            return []


async def test_a_consent_through_the_identity_platform_registers_the_tenant_and_the_queue_trigger_subscribes_it(
    multi: tuple[Stack, Consent, TenantControl],
) -> None:
    stack, consent, of_new = multi
    assert consent.flow is not None
    start = await consent.flow.start({"name": "Fabrikam"}, utcnow())
    status, reply = await through_the_identity_platform(stack, start, sim_tenant=NEW)
    assert status == 302
    assert (reply["tenant"], reply["admin_consent"]) == (NEW, "True")

    page = await consent.flow.finish(reply, utcnow())
    assert page.status == 200, page.body
    assert "Fabrikam" in page.body and "is connected" in page.body
    tenant = await registered(stack, NEW)
    assert (tenant.status, tenant.name) == (ACTIVE, "Fabrikam")
    [message] = await queued(stack)
    envelope = Envelope.from_json(message.content)
    assert (envelope.source, envelope.items) == ("tenant", [{"tenantId": NEW}])

    # The queue trigger, as the host runs it: the tenant's subscriptions are created at once.
    assert await of_new.subscriptions() == []
    handled: list[str] = []
    handle = stack.worker.processor.handle

    async def counted(content: str, *args: Any) -> Any:
        handled.append(content)
        return await handle(content, *args)

    stack.worker.processor.handle = counted  # type: ignore[method-assign]
    await stack.pump(lambda: message.content in handled)
    [subscription] = await of_new.subscriptions()
    assert subscription["resource"].strip("/") == RESOURCE
    async with table_client(stack.connection, SUBSCRIPTIONS_TABLE) as client:
        [record] = await SubscriptionStore(client).list()
    assert (record.tenant, record.subscription_id) == (NEW, subscription["id"])
    assert await stack.control.subscriptions() == []  # the home tenant, never registered, got none

    # The link works once: the same reply again registers nothing more.
    again = await consent.flow.finish(reply, utcnow())
    assert again.status == 400 and "used already" in again.body


async def test_a_consent_denied_at_the_identity_platform_registers_nothing(
    multi: tuple[Stack, Consent, TenantControl],
) -> None:
    stack, consent, _of_new = multi
    assert consent.flow is not None
    await stack.control.call("POST", "/consent", {"decision": "deny"})
    start = await consent.flow.start({"name": "Fabrikam"}, utcnow())
    status, reply = await through_the_identity_platform(stack, start)
    assert status == 302
    assert reply["error"] == "consent_required" and "tenant" not in reply

    page = await consent.flow.finish(reply, utcnow())
    assert page.status == 400
    assert "declined" in page.body and "consent_required" in page.body
    assert "AADSTS65004" not in page.body  # the error_description goes to the log only
    assert await registered(stack, NEW) is None
    assert await queued(stack) == []
    async with table_client(stack.connection, TENANTS_TABLE) as client:
        assert await TenantStore(client).list() == []
