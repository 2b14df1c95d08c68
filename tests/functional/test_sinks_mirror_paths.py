"""The blob mirror's names against Azurite: Graph's percent-encoded paths decoded once, nothing
written outside the drive's prefix, names Blob storage cannot hold mapped or poisoned at once.

Graph is played by a small HTTP server that answers the item GET and the download URL with
Microsoft's documented driveItems (tests/payloads/driveitems-percent-encoded-path.json): the
mirror reads them through the real msgraph SDK, as in production.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from devtools.azurite import ACCOUNT, KEY, Azurite, free_port
from devtools.messages import receive_json
from shared.graph import GraphGateway
from shared.model.sinks import BlobSink, Delivery
from shared.queues.message_queue import MessageQueue
from shared.sinks.mirror import MIRROR_TABLE, BlobMirror
from shared.sinks.ordering import ORDER_TABLE, OrderBook
from shared.sinks.runner import SinkRunner
from shared.stores.clients import queue_client, table_client
from tests.conftest import PAYLOADS

DOCUMENTED = json.loads((PAYLOADS / "driveitems-percent-encoded-path.json").read_text())
DRIVE = DOCUMENTED["file"]["parentReference"]["driveId"]
QUEUE = "mirror-paths"
CONTAINER = "mirror"


@dataclass
class FakeDrive:
    """Graph's item GET and the pre-authenticated download URL, over real HTTP."""

    base: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    content: dict[str, bytes] = field(default_factory=dict)

    def put(self, item: dict[str, Any], data: bytes | None = None) -> None:
        self.items[item["id"]] = item
        if data is not None:
            item["size"] = len(data)
            self.content[item["id"]] = data

    async def item(self, request: web.Request) -> web.Response:
        found = self.items.get(request.match_info["item"])
        if found is None or request.match_info["drive"] != DRIVE:
            return web.json_response({"error": {"code": "itemNotFound", "message": "Item not found"}}, status=404)
        return web.json_response({**found, "@microsoft.graph.downloadUrl": f"{self.base}/download/{found['id']}"})

    async def download(self, request: web.Request) -> web.Response:
        data = self.content[request.match_info["item"]]
        start, _, end = request.headers.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
        chunk = data[int(start) : int(end) + 1 if end else None]
        return web.Response(status=206 if "Range" in request.headers else 200, body=chunk)


@dataclass
class Mirror:
    drive: FakeDrive
    runner: SinkRunner
    azurite: Azurite
    clock: int = 0

    async def change(self, item: dict[str, Any], change_type: str = "updated") -> str:
        """Send one driveItem event of ``item`` through the sink's runner, once, as the host would."""
        self.clock += 1
        at = datetime(2026, 11, 22, 10, tzinfo=UTC) + timedelta(seconds=self.clock)
        event = {
            "schemaVersion": 1,
            "id": f"event-{self.clock}",
            "kind": "driveItem",
            "changeType": change_type,
            "itemId": item["id"],
            "containerId": DRIVE,
            "item": item,
            "observedAt": at.isoformat().replace("+00:00", "Z"),
        }
        return await self.runner.handle(json.dumps(event), 1)

    async def poisoned(self) -> list[dict[str, Any]]:
        return await receive_json(self.azurite.connection_string, f"{QUEUE}-poison")

    async def everything(self) -> dict[tuple[str, str], bytes]:
        """Every blob of every container of the account: (container, name) -> content."""
        found: dict[tuple[str, str], bytes] = {}
        async with BlobServiceClient.from_connection_string(self.azurite.connection_string) as service:
            async for container in service.list_containers():
                client = service.get_container_client(container.name)
                async for blob in client.list_blobs():
                    found[(container.name, blob.name)] = await (await client.download_blob(blob.name)).readall()
        return found


def account_sas_container(azurite: Azurite) -> ContainerClient:
    """The mirror's container reached with a credential that does not sign the blob's path.

    An account SAS, like the managed identity's bearer token the Bicep deploys, covers the
    account, not one path: a name the HTTP stack normalises is written where it lands.
    """
    sas = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return ContainerClient(f"http://127.0.0.1:{azurite.blob_port}/{ACCOUNT}", CONTAINER, credential=sas)


@pytest.fixture
async def mirror_factory(azurite_factory: Any) -> AsyncIterator[Callable[[], Awaitable[Mirror]]]:
    closers: list[Any] = []

    async def make() -> Mirror:
        from kiota_abstractions.authentication import AnonymousAuthenticationProvider
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient

        azurite = azurite_factory()  # a private account: the listing of every container is this test's
        port = free_port()
        drive = FakeDrive(f"http://127.0.0.1:{port}")
        app = web.Application()
        app.router.add_get("/v1.0/drives/{drive}/items/{item}", drive.item)
        app.router.add_get("/download/{item}", drive.download)
        server = web.AppRunner(app)
        await server.setup()
        await web.TCPSite(server, "127.0.0.1", port).start()
        closers.append(server.cleanup)

        adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
        adapter.base_url = f"{drive.base}/v1.0"
        graph = GraphGateway(GraphServiceClient(request_adapter=adapter), attempts=1)
        connection = azurite.connection_string
        config = BlobSink(Delivery(0, QUEUE), CONTAINER)
        container = account_sas_container(azurite)
        index, order_table = table_client(connection, MIRROR_TABLE), table_client(connection, ORDER_TABLE)
        queue, poison = queue_client(connection, QUEUE), queue_client(connection, f"{QUEUE}-poison")
        closers.extend(c.close for c in (container, index, order_table, queue, poison))
        mirror = BlobMirror(config, graph, adapter.base_url, container, index, OrderBook(order_table, QUEUE))
        await mirror.setup()
        closers.append(mirror.close)
        async with BlobServiceClient.from_connection_string(connection) as service:
            await service.create_container("other")  # a neighbour that must stay untouched
        runner = SinkRunner(mirror, config.delivery, MessageQueue(queue), MessageQueue(poison))
        return Mirror(drive, runner, azurite)

    yield make
    for close in reversed(closers):
        await close()


async def test_an_item_under_an_encoded_folder_lands_at_the_decoded_path_and_stays(mirror_factory: Any) -> None:
    mirror = await mirror_factory()
    folder, file = copy.deepcopy(DOCUMENTED["folder"]), copy.deepcopy(DOCUMENTED["file"])
    mirror.drive.put(folder)
    mirror.drive.put(file, b"one")
    expected = f"{DRIVE}/My Folder/my file.docx"

    assert await mirror.change(file, "created") == "delivered"
    assert await mirror.everything() == {(CONTAINER, expected): b"one"}
    # Delta reports the folder when a child changes: its prefix is the same decoded path, nothing moves.
    assert await mirror.change(folder) == "delivered"
    assert await mirror.everything() == {(CONTAINER, expected): b"one"}

    file["eTag"], file["file"]["hashes"]["quickXorHash"] = '"{3B4E5A1C},2"', "BBBBBBBBBBBBBBBBBBBBBBBBBBB="
    mirror.drive.put(file, b"two")
    assert await mirror.change(file) == "delivered"
    assert await mirror.change(folder) == "delivered"
    assert await mirror.everything() == {(CONTAINER, expected): b"two"}
    assert await mirror.poisoned() == []


def hostile(path: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The documented file with its path (as Graph would send it, encoded) or its name replaced."""
    item = copy.deepcopy(DOCUMENTED["file"])
    item["id"] = f"hostile-{abs(hash((path, name)))}"
    if path is not None:
        item["parentReference"]["path"] = path
    if name is not None:
        item["name"] = name
    return item


ESCAPES = [
    hostile(path="/drive/root:/a/../../../other"),  # up and out of the container, into "other"
    hostile(path="/drive/root:/a/%2E%2E/%2E%2E/%2E%2E/other"),  # the same, percent-encoded
    hostile(path="/drive/root:/../../other"),
    hostile(path="/drive/root:/a%2F..%2F..%2F..%2Fother"),  # an encoded slash inside one segment
    hostile(path="/drive/root:/a\\..\\..\\..\\other"),  # Blob storage reads a backslash as a slash
    hostile(path="/drive/root:/a//b"),
    hostile(path="/drive/root:/./a"),
    hostile(name=".."),
    hostile(name="..\\..\\..\\other\\x"),
    hostile(name="x\u0000y"),
    hostile(path="/drive/root:/%FF%FE"),  # not UTF-8 once decoded
]


async def test_a_path_that_would_leave_the_drive_is_poisoned_at_once_and_nothing_is_written(
    mirror_factory: Any,
) -> None:
    mirror = await mirror_factory()
    for item in ESCAPES:
        mirror.drive.put(item, b"escaped")
        outcome = await mirror.change(item, "created")
        assert outcome == "poisoned", item  # at the first attempt, not the host's fifth
        assert await mirror.everything() == {}, item  # in no container at all
    assert [p["itemId"] for p in await mirror.poisoned()] == [item["id"] for item in ESCAPES]


async def test_a_trailing_dot_is_mapped_one_to_one_and_too_long_a_name_is_poisoned(mirror_factory: Any) -> None:
    mirror = await mirror_factory()
    dotted = hostile(path="/drive/root:/v1.", name="report.")
    mirror.drive.put(dotted, b"dots")
    assert await mirror.change(dotted, "created") == "delivered"
    stored = {name: data for (_, name), data in (await mirror.everything()).items()}
    assert stored == {f"{DRIVE}/v1%2E/report%2E": b"dots"}  # Blob storage would drop a trailing dot
    assert [unquote(part) for part in next(iter(stored)).split("/")[1:]] == ["v1.", "report."]

    deep = hostile(path="/drive/root:/" + "/".join(["d"] * 300))
    long = hostile(name="n" * 1100)
    for item in (deep, long):
        mirror.drive.put(item, b"x")
        assert await mirror.change(item, "created") == "poisoned"
    assert [p["itemId"] for p in await mirror.poisoned()] == [deep["id"], long["id"]]
    assert set(await mirror.everything()) == {(CONTAINER, f"{DRIVE}/v1%2E/report%2E")}
