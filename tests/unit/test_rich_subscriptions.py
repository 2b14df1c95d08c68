"""Rich subscriptions: the creation body, renewal timing with resource data, and the processor's grouping."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.graphsim.rich import SampleCertificate, encrypt_content, make_certificate, tamper
from shared import refusals
from shared.app.encryption import encryption_for
from shared.errors import GraphRequestError
from shared.graph import GraphGateway
from shared.model.lifetimes import next_expiry
from shared.model.notifications import Envelope
from shared.model.resources import DesiredSubscription
from shared.model.subscription import ACTIVE, RemoteSubscription, SubscriptionRecord, SubscriptionRequest
from shared.processor import Processor
from shared.reconcile.creation import thumbprint
from shared.reconcile.plan import plan
from shared.reconcile.reconciler import Endpoints, Reconciler
from shared.security.certificates import CertificateBook, parse_certificate
from shared.security.resource_data import ResourceDataReader
from shared.sources.teams import TeamsMessageSource
from shared.stores.pending import PendingCreation
from shared.sync.coalescing import Action

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
URL = "https://app.example.com/api/notifications"
CHANNEL = "teams/team-1/channels/19:general@thread.tacv2/messages"
INBOX = "users/ada@contoso.com/mailFolders/inbox/messages"


@pytest.fixture(scope="module")
def certificate() -> SampleCertificate:
    return make_certificate()


# ---- creation body ------------------------------------------------------------------------------


class Adapter:
    """The SDK's request adapter as GraphGateway uses it: records what is sent, answers like Graph."""

    base_url = "https://graph.example.test/v1.0"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_primitive_async(self, info: Any, kind: str, errors: Any) -> bytes:
        body = json.loads(info.content)
        self.sent.append(body)
        return json.dumps({"id": "sub-1", **body}).encode()


def gateway(adapter: Adapter) -> GraphGateway:
    subscriptions = SimpleNamespace(url_template="{+baseurl}/subscriptions", path_parameters={})
    return GraphGateway(SimpleNamespace(request_adapter=adapter, subscriptions=subscriptions))  # type: ignore[arg-type]


async def test_a_subscription_with_resource_data_sends_the_public_certificate_as_base64_der(
    certificate: SampleCertificate,
) -> None:
    adapter = Adapter()
    expiry = NOW + timedelta(minutes=4315)
    await gateway(adapter).create_subscription(
        SubscriptionRequest(CHANNEL, "created", URL, URL, "state", expiry, (certificate.public_base64, "cert-1"))
    )
    [body] = adapter.sent
    assert body["includeResourceData"] is True
    assert base64.b64decode(body["encryptionCertificate"]) == certificate.der
    assert body["encryptionCertificateId"] == "cert-1"
    assert b"PRIVATE KEY" not in json.dumps(body).encode()


async def test_a_subscription_without_resource_data_sends_no_encryption_fields() -> None:
    adapter = Adapter()
    await gateway(adapter).create_subscription(
        SubscriptionRequest("drives/b!x/root", "updated", URL, URL, "state", NOW)
    )
    [body] = adapter.sent
    assert not {"includeResourceData", "encryptionCertificate", "encryptionCertificateId"} & body.keys()


# ---- renewal with resource data -----------------------------------------------------------------


def record(resource: str, expires_at: datetime) -> SubscriptionRecord:
    want = DesiredSubscription(resource, "created")
    return SubscriptionRecord(want.key, resource, "created", "state", ACTIVE, NOW, "sub-1", expires_at)


def test_a_freshly_renewed_outlook_subscription_with_resource_data_is_not_renewed_again() -> None:
    # Graph grants 1,440 minutes with resource data; against 10,080 it would look due every tick.
    want = DesiredSubscription(INBOX, "created", include_resource_data=True)
    granted = next_expiry(INBOX, NOW, include_resource_data=True)
    todo = plan([want], [record(INBOX, granted)], None, NOW + timedelta(minutes=5), URL)
    assert todo.renew == []


def test_an_outlook_subscription_with_resource_data_is_renewed_past_half_its_lifetime() -> None:
    want = DesiredSubscription(INBOX, "created", include_resource_data=True)
    granted = next_expiry(INBOX, NOW, include_resource_data=True)
    todo = plan([want], [record(INBOX, granted)], None, NOW + timedelta(minutes=740), URL)
    assert [r.resource for r in todo.renew] == [INBOX]


# ---- the processor: rich and plain notifications side by side -----------------------------------


class Store:
    def __init__(self, *records: SubscriptionRecord) -> None:
        self.records = {r.subscription_id: r for r in records}

    async def find(self, subscription_id: str) -> SubscriptionRecord | None:
        return self.records.get(subscription_id)


class Synchronizer:
    """Records what the processor asks: delta passes, and changes told by notifications (as the source reads them)."""

    def __init__(self) -> None:
        self.synced: list[str] = []
        self.told: list[Any] = []

    async def sync(self, record: SubscriptionRecord, notified_at: datetime, deferrals: int) -> Any:
        self.synced.append(record.resource)
        return SimpleNamespace(decision=SimpleNamespace(action=Action.RUN, delay=timedelta(0)), events=1)

    async def apply_notified(self, record: SubscriptionRecord, notified: Any, deferrals: int) -> Any:
        source = TeamsMessageSource()
        self.told += [(n["changeType"], source.notified(record.resource, n, data)) for n, data in notified]
        return SimpleNamespace(decision=SimpleNamespace(action=Action.RUN, delay=timedelta(0)), events=len(notified))


class Queue:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.claims = None  # no blob store: these tests queue no item over 48 KiB

    async def send(self, text: str, **options: Any) -> None:
        self.sent.append(text)


def processor(certificate: SampleCertificate, store: Store, sync: Synchronizer, changes: Queue) -> Processor:
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    reader = ResourceDataReader(book, lambda: NOW)
    return Processor(store, sync, None, Queue(), changes, lambda: NOW, resource_data=reader)  # type: ignore[arg-type]


def message(message_id: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "lastModifiedDateTime": "2026-11-22T09:59:00Z",
        "channelIdentity": {"teamId": "team-1", "channelId": "19:general@thread.tacv2"},
        "body": {"contentType": "text", "content": "hello"},
    }


def rich(sid: str, change: str, certificate: SampleCertificate, message_id: str) -> dict[str, Any]:
    path = f"teams('team-1')/channels('19:general@thread.tacv2')/messages('{message_id}')"
    item: dict[str, Any] = {
        "subscriptionId": sid,
        "changeType": change,
        "resource": path,
        "resourceData": {"id": message_id, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": path},
    }
    if change != "deleted":
        item["encryptedContent"] = encrypt_content(message(message_id), certificate.public_base64, "cert-1")
    return item


async def test_rich_items_are_told_to_the_synchronizer_while_plain_items_of_the_same_message_ask_for_a_pass(
    certificate: SampleCertificate,
) -> None:
    teams, drive = record(CHANNEL, NOW + timedelta(days=1)), record("drives/b!x/root", NOW + timedelta(days=1))
    drive = SubscriptionRecord(drive.key, drive.resource, "updated", "s", ACTIVE, NOW, "sub-2", drive.expires_at)
    sync, changes = Synchronizer(), Queue()
    items = [
        rich("sub-1", "created", certificate, "m1"),
        {"subscriptionId": "sub-2", "changeType": "updated", "resource": "drives/b!x/root"},
        rich("sub-1", "updated", certificate, "m1"),
    ]
    summary = await processor(certificate, Store(teams, drive), sync, changes).handle(
        Envelope("notifications", NOW, items).to_json()
    )
    assert sync.synced == ["drives/b!x/root"]  # the channel got no delta run
    assert summary.runs == 1 and summary.events == 1 + 2
    assert [(change, told.change.item_id, told.change.item["body"]["content"]) for change, told in sync.told] == [
        ("created", "m1", "hello"),
        ("updated", "m1", "hello"),
    ]
    assert changes.sent == [], "nothing poisoned"


async def test_a_teams_deletion_without_encrypted_content_is_told_as_a_deletion_not_a_pass(
    certificate: SampleCertificate,
) -> None:
    # Graph's deletion names the message in resourceData only; a delta run could not see it.
    sync, changes = Synchronizer(), Queue()
    teams = record(CHANNEL, NOW + timedelta(days=1))
    items = [rich("sub-1", "deleted", certificate, "m1")]
    summary = await processor(certificate, Store(teams), sync, changes).handle(
        Envelope("notifications", NOW, items).to_json()
    )
    [(_, told)] = sync.told
    assert sync.synced == [] and summary.events == 1
    assert (told.change.item_id, told.change.version, told.change.item) == ("m1", None, None)
    assert told.container_id == "team-1/19:general@thread.tacv2"


async def test_a_notification_that_cannot_be_decrypted_is_kept_in_the_poison_queue_not_dropped(
    certificate: SampleCertificate,
) -> None:
    sync, poison = Synchronizer(), Queue()
    teams = record(CHANNEL, NOW + timedelta(days=1))
    spoiled = rich("sub-1", "created", certificate, "m1")
    spoiled["encryptedContent"] = tamper(spoiled["encryptedContent"])
    items = [spoiled, rich("sub-1", "created", certificate, "m2")]
    summary = await processor(certificate, Store(teams), sync, poison).handle(
        Envelope("notifications", NOW, items).to_json()
    )
    assert [told.change.item_id for _, told in sync.told] == ["m2"]
    assert summary.poisoned == 1 and summary.events == 1
    [kept] = [Envelope.from_json(text) for text in poison.sent]
    assert kept.items == [spoiled], "kept whole, to be replayed once the certificate is fixed"
    counted = {(row.reason, row.count) for row in refusals.ledger().due(NOW + timedelta(days=1))}
    assert counted == {(refusals.Reason.DECRYPTION_FAILED, 1)}, "counted where an operator sees it"


async def test_a_plain_deletion_on_a_drive_still_asks_for_a_pass(certificate: SampleCertificate) -> None:
    sync, changes = Synchronizer(), Queue()
    drive = record("drives/b!x/root", NOW + timedelta(days=1))
    items = [{"subscriptionId": "sub-1", "changeType": "deleted", "resourceData": {"id": "item-1"}}]
    await processor(certificate, Store(drive), sync, changes).handle(Envelope("notifications", NOW, items).to_json())
    assert sync.synced == ["drives/b!x/root"] and changes.sent == []


# ---- the reconciler: expanded subscription sets ask for resource data too ---------------------------


class Graph:
    def __init__(self) -> None:
        self.created: dict[str, tuple[str, str] | None] = {}

    async def list_subscriptions(self, pace: Any = None) -> list[Any]:
        return []

    async def create_subscription(self, request: SubscriptionRequest) -> RemoteSubscription:
        self.created[request.resource] = request.encryption
        return RemoteSubscription(
            f"id-{len(self.created)}",
            request.resource,
            request.change_type,
            request.notification_url,
            request.expires_at,
        )


class Pending:
    """stores.pending.PendingCreations in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, PendingCreation] = {}

    async def record(self, pending: PendingCreation) -> PendingCreation:
        self.rows[pending.key] = pending
        return pending

    async def get(self, key: str) -> PendingCreation | None:
        return self.rows.get(key)

    async def all(self) -> list[PendingCreation]:
        return list(self.rows.values())

    async def settle(self, pending: PendingCreation | str) -> None:
        self.rows.pop(pending if isinstance(pending, str) else pending.key, None)


class Records:
    def __init__(self) -> None:
        self.pending = Pending()
        self.saved: list[SubscriptionRecord] = []
        self.retired: list[str] = []

    async def backfill(self) -> None:
        pass

    async def list(self) -> list[SubscriptionRecord]:
        return []

    async def save(self, record: SubscriptionRecord) -> None:
        self.saved.append(record)

    async def retire(self, subscription_id: str) -> None:
        self.retired.append(subscription_id)


class Starts:
    async def start(self, resource: str, full: bool, tenant: str = "") -> None:
        pass


class Members:
    """A set of two members, as shared/subscription_sets.py expands it."""

    async def expand(self, desired: Any) -> tuple[DesiredSubscription, ...]:
        return tuple(
            DesiredSubscription(d.resource.replace("{member}", member), d.change_type, d.include_resource_data)
            for d in desired
            for member in ("ada@contoso.com", "bob@contoso.com")
        )


async def test_members_of_a_set_asking_for_resource_data_are_subscribed_with_the_certificate(
    certificate: SampleCertificate,
) -> None:
    entry = DesiredSubscription(
        "users/{member}/messages", "created", include_resource_data=True, for_each_member_of="group-1"
    )
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    settings = SimpleNamespace(subscriptions=[entry])
    graph = Graph()
    reconciler = Reconciler(
        graph,  # type: ignore[arg-type]
        Records(),  # type: ignore[arg-type]
        Starts(),  # type: ignore[arg-type]
        Queue(),  # type: ignore[arg-type]
        Endpoints(URL, URL),
        sets=Members(),  # type: ignore[arg-type]
        encryption_for=encryption_for(settings, book),  # type: ignore[arg-type]
    )
    report = await reconciler.reconcile([entry], NOW)
    assert report.created == 2
    assert graph.created == {
        "users/ada@contoso.com/messages": (certificate.public_base64, "cert-1"),
        "users/bob@contoso.com/messages": (certificate.public_base64, "cert-1"),
    }


@pytest.mark.parametrize(
    ("start", "expected"),
    [("2026-12-01T09:00:00", 1), ("2028-01-01T09:00:00", 0), ("2026-01-01T09:00:00", 0)],
    ids=["inside", "after-the-window", "before-the-window"],
)
async def test_a_rich_event_outside_the_calendar_window_is_ignored(
    certificate: SampleCertificate, start: str, expected: int
) -> None:
    # CALENDAR_WINDOW_DAYS_PAST 30 and _AHEAD 365 around NOW: delta would not return such an event either.
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-1", "NOTIFICATION_CERTIFICATE"))
    reader = ResourceDataReader(book, lambda: NOW, (30, 365))
    event = {
        "@odata.type": "#Microsoft.Graph.Event",
        "id": "ev-1",
        "lastModifiedDateTime": "2026-11-22T09:59:00Z",
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": start.replace("09:00", "10:00"), "timeZone": "UTC"},
    }
    item = {
        "subscriptionId": "sub-1",
        "changeType": "updated",
        "resource": "users/u1/events/ev-1",
        "resourceData": {"id": "ev-1", "@odata.type": "#Microsoft.Graph.Event"},
        "encryptedContent": encrypt_content(event, certificate.public_base64, "cert-1"),
    }

    reading = reader.read("sub-1", [item])

    assert (len(reading.told), reading.outside_window) == (expected, 1 - expected)


# ---- the reconciler: a new certificate ---------------------------------------------------------------


class Patches(Graph):
    """Graph answering renewals; ``refuse`` answers a certificate PATCH with 400."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.patched: list[tuple[str, tuple[str, str] | None]] = []
        self.deleted: list[str] = []

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime, encryption: tuple[str, str] | None = None
    ) -> datetime:
        self.patched.append((subscription_id, encryption))
        if encryption is not None and self.refuse:
            raise GraphRequestError("Graph answered 400", 400, "InvalidRequest")
        return expires_at

    async def delete_subscription(self, subscription_id: str) -> None:
        self.deleted.append(subscription_id)


class Requests:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)


def rich_reconciler(graph: Patches, records: Records, certificate: SampleCertificate) -> Reconciler:
    book = CertificateBook(parse_certificate(certificate.pem, None, "cert-new", "NOTIFICATION_CERTIFICATE"))
    entry = DesiredSubscription(CHANNEL, "created", include_resource_data=True)
    return Reconciler(
        graph,  # type: ignore[arg-type]
        records,  # type: ignore[arg-type]
        Starts(),  # type: ignore[arg-type]
        Requests(),  # type: ignore[arg-type]
        Endpoints(URL, URL),
        encryption_for=encryption_for(SimpleNamespace(subscriptions=[entry]), book),  # type: ignore[arg-type]
    )


def stranded() -> SubscriptionRecord:
    key = DesiredSubscription(CHANNEL, "created").key
    return SubscriptionRecord(
        key, CHANNEL, "created", "cs", ACTIVE, NOW, "sub-old", NOW + timedelta(days=2), "", "cert-old", "AA"
    )


async def test_a_renewal_moves_a_subscription_onto_the_current_certificate(certificate: SampleCertificate) -> None:
    graph, records = Patches(), Records()

    renewed = await rich_reconciler(graph, records, certificate).renew(stranded(), NOW)

    assert graph.patched == [("sub-old", (certificate.public_base64, "cert-new"))]
    assert (renewed.subscription_id, renewed.certificate_id) == ("sub-old", "cert-new")
    assert renewed.certificate_thumbprint == thumbprint(certificate.public_base64)
    assert records.saved == [renewed]


async def test_a_certificate_graph_refuses_to_patch_comes_with_a_new_subscription(
    certificate: SampleCertificate,
) -> None:
    graph, records = Patches(refuse=True), Records()

    replaced = await rich_reconciler(graph, records, certificate).renew(stranded(), NOW)

    assert graph.created == {CHANNEL: (certificate.public_base64, "cert-new")}
    assert (replaced.subscription_id, replaced.certificate_id) == ("id-1", "cert-new")
    assert graph.deleted == ["sub-old"] and records.retired == ["sub-old"]  # after the new one is saved
    assert records.saved[-1] == replaced and records.pending.rows == {}
