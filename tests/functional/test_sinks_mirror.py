"""The blob mirror against the simulator's file content and Azurite's blob service."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from azure.storage.blob.aio import ContainerClient

from devtools.messages import receive_json
from shared.app.sinks import SinkRuntime, build_sinks
from shared.queues.message_queue import MessageQueue
from shared.stores.clients import queue_client
from tests.functional.stacks import DRIVE, Stack, subscribed

QUEUE = "mirror-sink"


async def mirrored(stack_factory: Any, on_delete: str = "delete") -> tuple[Stack, SinkRuntime]:
    sinks = [{"type": "blob", "container": "mirror", "name": QUEUE, "onDelete": on_delete}]
    stack = await subscribed(stack_factory, env={"SINKS": json.dumps(sinks)})
    return stack, await build_sinks(stack.env)


async def settle(stack: Stack, runtime: SinkRuntime, until: Any) -> None:
    """Run the pipeline, then the mirror's queue until it is empty."""
    await stack.pump(until)
    async with queue_client(stack.connection, QUEUE) as client:
        runner = runtime.runner(QUEUE)
        while True:
            batch = [
                m async for m in client.receive_messages(messages_per_page=16, max_messages=16, visibility_timeout=30)
            ]
            if not batch:
                return
            for message in batch:
                await runner.handle(message.content, message.dequeue_count)
                await client.delete_message(message)


async def blobs(stack: Stack) -> dict[str, bytes]:
    async with ContainerClient.from_connection_string(stack.connection, "mirror") as container:
        names = [b.name async for b in container.list_blobs()]
        return {name: await (await container.download_blob(name)).readall() for name in names}


async def properties(stack: Stack, name: str) -> Any:
    async with ContainerClient.from_connection_string(stack.connection, "mirror") as container:
        return await container.get_blob_client(name).get_blob_properties()


async def test_create_update_rename_move_delete_and_folders(stack_factory: Any) -> None:
    stack, runtime = await mirrored(stack_factory)
    control = stack.control
    try:
        folder = await control.create_item(DRIVE, "docs", folder=True)
        item = await control.create_item(DRIVE, "a.txt", "one")
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 1)
        assert await blobs(stack) == {f"{DRIVE}/a.txt": b"one"}  # the folder made no blob
        meta = (await properties(stack, f"{DRIVE}/a.txt")).metadata
        assert meta["itemid"] == item["id"] and meta["contenthash"].startswith("quickXorHash:")

        await control.update_item(DRIVE, item["id"], "two")
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 2)
        assert await blobs(stack) == {f"{DRIVE}/a.txt": b"two"}

        await control.rename_item(DRIVE, item["id"], "b.txt")
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 3)
        assert await blobs(stack) == {f"{DRIVE}/b.txt": b"two"}

        await control.move_item(DRIVE, item["id"], folder["id"])
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 4)
        assert await blobs(stack) == {f"{DRIVE}/docs/b.txt": b"two"}

        await control.delete_item(DRIVE, item["id"])
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 5)
        assert await blobs(stack) == {}
    finally:
        await runtime.close()


async def test_a_renamed_or_moved_folder_moves_every_blob_beneath_it(stack_factory: Any) -> None:
    stack, runtime = await mirrored(stack_factory)
    control = stack.control
    try:
        docs = await control.create_item(DRIVE, "docs", folder=True)
        sub = await control.create_item(DRIVE, "sub", folder=True, parent_id=docs["id"])
        top = await control.create_item(DRIVE, "top", folder=True)
        a = await control.create_item(DRIVE, "a.txt", "A", parent_id=docs["id"])
        b = await control.create_item(DRIVE, "b.txt", "B", parent_id=sub["id"])
        await settle(stack, runtime, lambda: bool(stack.for_item(a["id"]) and stack.for_item(b["id"])))
        assert await blobs(stack) == {f"{DRIVE}/docs/a.txt": b"A", f"{DRIVE}/docs/sub/b.txt": b"B"}

        # Delta reports the folder only, never the files beneath it.
        await control.rename_item(DRIVE, docs["id"], "papers")
        await settle(stack, runtime, lambda: _seen(stack, docs["id"], lambda item: item["name"] == "papers"))
        assert not stack.for_item(a["id"])[1:] and not stack.for_item(b["id"])[1:]
        assert await blobs(stack) == {f"{DRIVE}/papers/a.txt": b"A", f"{DRIVE}/papers/sub/b.txt": b"B"}

        # The folder beneath learned its new place: moving it again moves its file from there.
        await control.move_item(DRIVE, sub["id"], top["id"])
        await settle(
            stack, runtime, lambda: _seen(stack, sub["id"], lambda item: item["parentReference"]["id"] == top["id"])
        )
        assert await blobs(stack) == {f"{DRIVE}/papers/a.txt": b"A", f"{DRIVE}/top/sub/b.txt": b"B"}

        # The files' rows followed: a later change writes in place and a delete finds the blob.
        await control.update_item(DRIVE, b["id"], "B2")
        await control.delete_item(DRIVE, a["id"])
        await settle(stack, runtime, lambda: len(stack.for_item(b["id"])) == 2 and len(stack.for_item(a["id"])) == 2)
        assert await blobs(stack) == {f"{DRIVE}/top/sub/b.txt": b"B2"}
        assert await receive_json(stack.connection, f"{QUEUE}-poison") == []
    finally:
        await runtime.close()


def _seen(stack: Stack, item_id: str, check: Any) -> bool:
    """An event of the item whose driveItem passes ``check``."""
    return any(isinstance(e.get("item"), dict) and check(e["item"]) for e in stack.for_item(item_id))


async def test_unchanged_content_and_replay_write_nothing(stack_factory: Any) -> None:
    stack, runtime = await mirrored(stack_factory)
    try:
        item = await stack.control.create_item(DRIVE, "a.txt", "same")
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 1)
        before = await properties(stack, f"{DRIVE}/a.txt")
        # Replay every event: the container stays as it is, the blob is not rewritten.
        async with queue_client(stack.connection, QUEUE) as client:
            await MessageQueue(client).send_all(json.dumps(e) for e in stack.events)
        await settle(stack, runtime, lambda: True)
        after = await properties(stack, f"{DRIVE}/a.txt")
    finally:
        await runtime.close()
    assert await blobs(stack) == {f"{DRIVE}/a.txt": b"same"}
    assert after.etag == before.etag
    assert await receive_json(stack.connection, f"{QUEUE}-poison") == []


async def test_delete_can_move_to_deleted(stack_factory: Any) -> None:
    stack, runtime = await mirrored(stack_factory, on_delete="move")
    try:
        item = await stack.control.create_item(DRIVE, "keep.txt", "data")
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 1)
        await stack.control.delete_item(DRIVE, item["id"])
        await settle(stack, runtime, lambda: len(stack.for_item(item["id"])) == 2)
    finally:
        await runtime.close()
    assert await blobs(stack) == {f"deleted/{DRIVE}/keep.txt": b"data"}


async def test_large_file_is_streamed_in_ranges(stack_factory: Any) -> None:
    stack, runtime = await mirrored(stack_factory)
    size = 20 * 1024 * 1024 + 123  # three ranges, the last one short
    try:
        made = await stack.control.generate_items(DRIVE, 1, folders=1, notify=True, size_bytes=size, prefix="big")
        (item_id,) = made["sampleIds"]
        await settle(stack, runtime, lambda: bool(stack.for_item(item_id)))
        (name,) = [n async for n in _names(stack)]
        async with ContainerClient.from_connection_string(stack.connection, "mirror") as container:
            data = await (await container.download_blob(name)).readall()
    finally:
        await runtime.close()
    block = hashlib.sha256(item_id.encode()).digest()
    expected = (block * (size // len(block) + 1))[:size]
    assert len(data) == size and data == expected


async def _names(stack: Stack) -> Any:
    async with ContainerClient.from_connection_string(stack.connection, "mirror") as container:
        async for blob in container.list_blobs():
            yield blob.name
