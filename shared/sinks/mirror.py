"""The blob mirror of drives: each file at ``{drive-id}/{path}`` in a container.

The path is Graph's percent-encoded ``parentReference.path``, decoded once, and no name
ever leaves its drive's prefix: blobnames.py decides, refusing (poison at once) what
would escape or what Blob storage cannot hold, and mapping a trailing dot. Every blob
name the mirror touches, stored rows and listings included, passes that check.

A created or updated file is read through Graph (a GET of the item gives its path,
which delta omits on OneDrive for Business, its hashes and its pre-authenticated
``@microsoft.graph.downloadUrl``) and streamed in ranged GETs of RANGE bytes into
staged blocks, committed at the end: memory holds one range, whatever the size.
The content is written only if the blob's stored hash (``sha256Hash``, else
``quickXorHash``) differs. A table row per item (``sinkmirror``) keeps its blob
name, so a rename or move copies the blob server-side to the new name and deletes
the old one, and a deletion (whose event has no item) finds its blob: deleted, or
moved under ``deleted/`` with ``onDelete: move``. Every step is idempotent, so a
replay leaves the same container. Per-item order is kept by the OrderBook, as for
the webhook.

Folders create no blob, but a row per folder keeps its blob prefix. Delta reports a
renamed or moved folder and none of its children (Graph documents this), so the
folder's event moves every blob under the old prefix, rewrites the rows of the
files and folders beneath, and records the new prefix last: a crash midway is
finished by the replay. A folder is known from its own events and from the files
written directly in it; a folder never seen (``INITIAL_SYNC=latest``, no event,
no file of its own written since) is renamed without its blobs moving, and its
files move on their next change.

With TENANT_MODE=multi each event's tenant reads through its own Graph client, its
blobs live under ``{tenant-id}/`` and its rows are keyed by tenant, so two tenants'
drives of the same id never meet. A ``tenant.removed`` event deletes the tenant's blobs
and rows (removals.py).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from shared.errors import DeliveryRejectedError, DeliveryRetryError, GraphRequestError, TransientGraphError
from shared.model.events import TENANT_KIND, TENANT_REMOVED
from shared.model.names import SINK_MIRROR_TABLE
from shared.model.resources import resource_key
from shared.model.sinks import BlobSink
from shared.model.tenant import scoped_key
from shared.sinks.blobnames import DELETED_PREFIX, blob_name, checked_blob, drive_root
from shared.sinks.ordering import OrderBook
from shared.sinks.removals import RemovedTenants
from shared.stores.tables import ensure_table, quote_filter

if TYPE_CHECKING:
    import aiohttp
    from azure.data.tables.aio import TableClient
    from azure.storage.blob.aio import BlobClient, ContainerClient

    from shared.graph import GraphGateway

MIRROR_TABLE = SINK_MIRROR_TABLE
RANGE = 8 * 1024 * 1024


@dataclass(frozen=True)
class MirroredDrive:
    """One drive of one tenant ('' in a single-tenant deployment), and where its blobs live."""

    tenant: str
    drive_id: str

    @property
    def root(self) -> str:
        return drive_root(self.drive_id, self.tenant)


def content_hash(item: dict[str, Any]) -> str:
    """The item's content hash as ``kind:value`` (sha256Hash preferred), or '' if Graph gave none."""
    hashes = (item.get("file") or {}).get("hashes") or {}
    for kind in ("sha256Hash", "quickXorHash"):
        if hashes.get(kind):
            return f"{kind}:{hashes[kind]}"
    return ""


def blob_metadata(item: dict[str, Any]) -> dict[str, str]:
    """The item's Graph metadata, ASCII only (blob metadata must be)."""
    values = {
        "itemid": str(item.get("id", "")),
        "etag": str(item.get("eTag", "")),
        "lastmodified": str(item.get("lastModifiedDateTime", "")),
        "contenthash": content_hash(item),
        "name": str(item.get("name", "")),
    }
    return {key: quote(value, safe=" !#$&'()*+,-./:;=?@[]^_{|}~\"") for key, value in values.items()}


class BlobMirror:
    """Keeps a container in step with the drives' files."""

    def __init__(
        self,
        config: BlobSink,
        graph: GraphGateway | None,
        graph_base_url: str,
        container: ContainerClient,
        index: TableClient,
        order: OrderBook,
        tenant_graphs: Callable[[str], GraphGateway] | None = None,
    ) -> None:
        self._config = config
        self._graph = graph
        # TENANT_MODE=multi: each tenant's Graph client; its blobs and rows are then kept by tenant.
        self._tenant_graphs = tenant_graphs
        self._base = graph_base_url.rstrip("/")
        self._container = container
        self._index = index
        self._order = order
        self._removals = RemovedTenants(config.delivery.queue, index, container, order)
        self._session: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        """Create the container and the tables if needed."""
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        await ensure_table(self._index)
        await self._order.setup()

    # Both begin with removals.tenant_rows(queue, tenant), which a removal deletes.
    def _partition(self, drive: MirroredDrive) -> str:
        return scoped_key(drive.tenant, resource_key(f"{self._config.delivery.queue}|{drive.drive_id}"))

    def _folders(self, drive: MirroredDrive) -> str:
        return scoped_key(drive.tenant, resource_key(f"{self._config.delivery.queue}|{drive.drive_id}|folders"))

    async def deliver(self, messages: Sequence[dict[str, Any]]) -> None:
        """Apply each driveItem event to the container; forget a removed tenant."""
        for event in messages:
            tenant = str(event.get("tenantId") or "") if self._tenant_graphs is not None else ""
            if event.get("kind") == TENANT_KIND and event.get("changeType") == TENANT_REMOVED and tenant:
                await self._removals.forget(tenant, str(event.get("observedAt", "")))
                continue
            if event.get("kind") != "driveItem":
                continue
            if self._tenant_graphs is not None:
                if not tenant:
                    raise DeliveryRejectedError("a driveItem event with no tenantId in a multi-tenant deployment")
                if await self._removals.removed_after(tenant, str(event.get("observedAt", ""))):
                    continue  # retried after its tenant was removed: writing it would bring the tenant back
            item = event.get("item")
            drive, item_id = MirroredDrive(tenant, str(event.get("containerId", ""))), str(event.get("itemId", ""))
            etag = await self._order.claim(event)
            if event.get("changeType") == "deleted" or item is None:
                await self._remove(drive, item_id)
            elif isinstance(item, dict) and "folder" in item:
                await self._follow_folder(drive, item_id)  # no blob: only its prefix, if it moved
            else:
                await self._write(drive, item_id)
            await self._order.release(event, etag)

    async def abandon(self, messages: Sequence[dict[str, Any]]) -> None:
        """The event was poisoned: later events of its item may go."""
        for event in messages:
            await self._order.release(event)

    def _graph_of(self, tenant: str) -> GraphGateway:
        if self._tenant_graphs is not None:
            return self._tenant_graphs(tenant)
        assert self._graph is not None
        return self._graph

    async def _current(self, drive: MirroredDrive, item_id: str) -> dict[str, Any] | None:
        try:
            return await self._graph_of(drive.tenant).fetch_url(f"{self._base}/drives/{drive.drive_id}/items/{item_id}")
        except TransientGraphError as exc:
            raise DeliveryRetryError(f"Graph: {exc}", exc.retry_after) from exc
        except GraphRequestError as exc:
            if exc.graph_status == 404:
                return None  # deleted since: its deletion event follows
            raise

    async def _write(self, drive: MirroredDrive, item_id: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        item = await self._current(drive, item_id)
        if item is None or "folder" in item or "file" not in item:
            return
        target = blob_name(drive.drive_id, item, drive.tenant)
        wanted = content_hash(item)
        metadata = blob_metadata(item)
        partition = self._partition(drive)
        try:
            row: dict[str, Any] | None = dict(await self._index.get_entity(partition, item_id))
        except ResourceNotFoundError:
            row = None
        previous = str(row["blob"]) if row else None
        blob = self._blob(target)
        stored = await self._metadata_of(blob)
        if stored is not None and wanted and stored.get("contenthash") == wanted:
            if stored != metadata:
                await blob.set_blob_metadata(metadata)  # same bytes: only the metadata (eTag, name) changes
        elif previous and previous != target and wanted and await self._hash_of(self._blob(previous)) == wanted:
            await self._copy(self._blob(previous), blob, metadata)  # a rename or move
        else:
            await self._stream(item, blob, metadata)
        await self._index.upsert_entity({"PartitionKey": partition, "RowKey": item_id, "blob": target})
        if previous and previous != target:
            await self._delete(self._blob(previous))
        await self._learn_folder(drive, item, target)

    async def _learn_folder(self, drive: MirroredDrive, item: dict[str, Any], target: str) -> None:
        """Record the file's folder's prefix if none is: only the folder's own event may change it."""
        from azure.core.exceptions import ResourceExistsError

        folder_id = str((item.get("parentReference") or {}).get("id") or "")
        prefix = target.rsplit("/", 1)[0]
        if not folder_id or prefix == drive.root:
            return  # the root never moves
        with contextlib.suppress(ResourceExistsError):
            await self._index.create_entity(
                {"PartitionKey": self._folders(drive), "RowKey": folder_id, "prefix": prefix}
            )

    async def _follow_folder(self, drive: MirroredDrive, folder_id: str) -> None:
        """Move the blobs under a renamed or moved folder; record its prefix."""
        from azure.core.exceptions import ResourceNotFoundError

        item = await self._current(drive, folder_id)
        if item is None or "folder" not in item or "root" in item:
            return
        prefix = blob_name(drive.drive_id, item, drive.tenant)
        partition = self._folders(drive)
        try:
            old: str | None = str((await self._index.get_entity(partition, folder_id))["prefix"])
        except ResourceNotFoundError:
            old = None
        if old == prefix:
            return
        if old is not None:
            await self._move_tree(drive, old, prefix)
        await self._index.upsert_entity({"PartitionKey": partition, "RowKey": folder_id, "prefix": prefix})

    async def _move_tree(self, drive: MirroredDrive, old: str, new: str) -> None:
        """Every blob under ``old/`` to ``new/``, with its item's row; then the folder rows beneath."""
        from azure.core.exceptions import ResourceNotFoundError

        files = self._partition(drive)
        async for listed in self._container.list_blobs(name_starts_with=f"{old}/", include=["metadata"]):
            metadata = dict(listed.metadata or {})
            target = new + listed.name[len(old) :]
            source = self._blob(listed.name)
            try:
                await self._copy(source, self._blob(target), metadata)
            except ResourceNotFoundError:
                continue  # moved meanwhile by its own event
            item_id = unquote(metadata.get("itemid", ""))
            if item_id:
                await self._index.upsert_entity({"PartitionKey": files, "RowKey": item_id, "blob": target})
            await self._delete(source)
        folders = self._folders(drive)
        # Prefixes under old/ sort from "old/" up to, not including, "old0" ('0' follows '/').
        query = (
            f"PartitionKey eq {quote_filter(folders)} and prefix ge {quote_filter(old + '/')} "
            f"and prefix lt {quote_filter(old + '0')}"
        )
        async for row in self._index.query_entities(query, select=["RowKey", "prefix"]):
            moved = new + str(row["prefix"])[len(old) :]
            await self._index.upsert_entity({"PartitionKey": folders, "RowKey": row["RowKey"], "prefix": moved})

    def _blob(self, name: str) -> BlobClient:
        """The blob client for ``name``, once it is known to stay inside its prefix (rows and listings too)."""
        return self._container.get_blob_client(checked_blob(name))

    async def _remove(self, drive: MirroredDrive, item_id: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        partition = self._partition(drive)
        try:
            row = await self._index.get_entity(partition, item_id)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceNotFoundError):
                await self._index.delete_entity(self._folders(drive), item_id)  # a folder's, if it was one
            return  # never mirrored, or already removed
        source = self._blob(str(row["blob"]))
        if self._config.keep_deleted and await self._hash_of(source) is not None:
            properties = await source.get_blob_properties()
            await self._copy(source, self._blob(DELETED_PREFIX + str(row["blob"])), dict(properties.metadata))
        await self._delete(source)
        with contextlib.suppress(ResourceNotFoundError):
            await self._index.delete_entity(partition, item_id)

    @classmethod
    async def _hash_of(cls, blob: BlobClient) -> str | None:
        """The stored content hash, '' if unknown, None if there is no blob."""
        metadata = await cls._metadata_of(blob)
        return None if metadata is None else metadata.get("contenthash", "")

    @staticmethod
    async def _metadata_of(blob: BlobClient) -> dict[str, str] | None:
        """The blob's metadata, None if there is no blob."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        return dict(properties.metadata or {})

    @staticmethod
    async def _delete(blob: BlobClient) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            await blob.delete_blob()

    @staticmethod
    async def _copy(source: BlobClient, target: BlobClient, metadata: dict[str, str]) -> None:
        """A server-side copy within the account; waits for it to finish."""
        import asyncio

        copy = await target.start_copy_from_url(source.url, metadata=metadata)
        status = copy.get("copy_status")
        while status == "pending":
            await asyncio.sleep(0.2)
            status = (await target.get_blob_properties()).copy.status
        if status != "success":
            raise DeliveryRetryError(f"blob copy ended {status}")

    async def _stream(self, item: dict[str, Any], blob: BlobClient, metadata: dict[str, str]) -> None:
        """Download in ranges and stage each as a block: one range in memory at a time."""
        import aiohttp
        from azure.storage.blob import BlobBlock, ContentSettings

        url = item.get("@microsoft.graph.downloadUrl")
        size = int(item.get("size") or 0)
        settings = ContentSettings(
            content_type=str((item.get("file") or {}).get("mimeType") or "application/octet-stream")
        )
        if size == 0 or not url:
            await blob.upload_blob(b"", overwrite=True, metadata=metadata, content_settings=settings)
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        blocks: list[BlobBlock] = []
        for number, start in enumerate(range(0, size, RANGE)):
            end = min(start + RANGE, size) - 1
            try:
                async with self._session.get(str(url), headers={"Range": f"bytes={start}-{end}"}) as response:
                    if response.status in (401, 403, 404):
                        raise DeliveryRetryError(f"download URL answered {response.status}")  # expired: GET again
                    if response.status == 429 or response.status >= 500:
                        raise DeliveryRetryError(f"download answered {response.status}")
                    data = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise DeliveryRetryError(f"{type(exc).__name__} downloading") from exc
            ranged = response.status == 206 and len(data) == end - start + 1
            whole = response.status == 200 and size <= RANGE and len(data) == size  # Range ignored: one range anyway
            if not (ranged or whole):
                raise DeliveryRetryError(f"ranged download returned {response.status} with {len(data)} bytes")
            block = base64.b64encode(f"{number:08d}".encode()).decode()
            await blob.stage_block(block, data)
            blocks.append(BlobBlock(block))
            del data
        await blob.commit_block_list(blocks, metadata=metadata, content_settings=settings)

    async def close(self) -> None:
        """Close the download session (the runtime closes the storage clients)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
