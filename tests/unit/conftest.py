"""Factories and sample payloads shared by the unit tests of ``shared/``.

Every factory builds a valid object and takes keyword overrides, so a test
states only what it is about.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.model.changes import SourceChange
from shared.model.resources import DesiredSubscription
from shared.model.subscription import ACTIVE, RemoteSubscription, SubscriptionRecord

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "tests" / "payloads"


NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NOTIFICATION_URL = "https://webhooks.example.com/api/notifications?code=function-key"
LIFECYCLE_URL = "https://webhooks.example.com/api/lifecycle?code=function-key"
DRIVE = "drives/b!dGVzdC1kcml2ZS1vbmU/root"


@pytest.fixture
def now() -> datetime:
    """The fixed 'current time' every test passes in."""
    return NOW


@pytest.fixture
def payload() -> Callable[[str], dict[str, Any]]:
    """Load a sample payload from tests/payloads by file name."""

    def load(name: str) -> dict[str, Any]:
        return dict(json.loads((PAYLOADS / name).read_text(encoding="utf-8")))

    return load


@pytest.fixture
def make_item() -> Callable[..., dict[str, Any]]:
    """A drive change notification as Graph delivers it (one element of ``value``)."""

    def make(**overrides: Any) -> dict[str, Any]:
        item: dict[str, Any] = {
            "subscriptionId": "aa269f87-2a92-4cff-a43e-2771878c3727",
            "subscriptionExpirationDateTime": "2026-02-13T11:00:00.0000000Z",
            "clientState": "secretClientValue",
            "changeType": "updated",
            "resource": DRIVE,
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": None,
        }
        item.update(overrides)
        return item

    return make


@pytest.fixture
def make_record() -> Callable[..., SubscriptionRecord]:
    """A stored, active subscription record for the drive, fresh at NOW; its key follows its resource."""

    def make(**overrides: Any) -> SubscriptionRecord:
        fields: dict[str, Any] = {
            "resource": DRIVE,
            "change_type": "updated",
            "client_state": "secretClientValue",
            "status": ACTIVE,
            "updated_at": NOW,
            "subscription_id": "aa269f87-2a92-4cff-a43e-2771878c3727",
            "expires_at": NOW + timedelta(minutes=42300 - 5),
        }
        fields.update(overrides)
        fields.setdefault("key", DesiredSubscription(fields["resource"], fields["change_type"]).key)
        return SubscriptionRecord(**fields)

    return make


@pytest.fixture
def make_remote() -> Callable[..., RemoteSubscription]:
    """A subscription as Graph lists it, pointing at this app's notification URL."""

    def make(**overrides: Any) -> RemoteSubscription:
        fields: dict[str, Any] = {
            "id": "aa269f87-2a92-4cff-a43e-2771878c3727",
            "resource": DRIVE,
            "change_type": "updated",
            "notification_url": NOTIFICATION_URL,
            "expires_at": NOW + timedelta(minutes=42300 - 5),
        }
        fields.update(overrides)
        return RemoteSubscription(**fields)

    return make


@pytest.fixture
def make_env() -> Callable[..., dict[str, str]]:
    """A complete app environment; pass ``KEY=None`` to leave a key out."""

    def make(**overrides: str | None) -> dict[str, str]:
        environ: dict[str, str | None] = {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "GRAPH_TENANT_ID": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "GRAPH_CLIENT_ID": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "GRAPH_CLIENT_SECRET": "client-secret",
            "NOTIFICATION_URL": NOTIFICATION_URL,
            "LIFECYCLE_NOTIFICATION_URL": LIFECYCLE_URL,
            "GRAPH_SUBSCRIPTIONS": json.dumps([{"resource": DRIVE}]),
        }
        environ.update(overrides)
        return {key: value for key, value in environ.items() if value is not None}

    return make


@pytest.fixture
def delta_changes() -> Callable[[dict[str, Any]], list[SourceChange]]:
    """The changes a driveItem delta page holds, as a drive source reports them.

    An item with the ``deleted`` facet is gone (no version); a live item's version is its eTag.
    """

    def convert(page: dict[str, Any]) -> list[SourceChange]:
        changes = []
        for item in page["value"]:
            if "deleted" in item:
                changes.append(SourceChange(item["id"], None, None))
            else:
                changes.append(SourceChange(item["id"], item["eTag"], item))
        return changes

    return convert
