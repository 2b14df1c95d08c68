"""The admin CLI `graphhooks` against a real Azurite and the Graph simulator.

Commands run in a thread through typer's CliRunner (each command runs its own event
loop) and read their settings from a local.settings.json made from the stack's settings,
as an operator's would be; `events tail` runs as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from typer.testing import CliRunner

import function_app
from devtools.azurite import Azurite, free_ports
from devtools.messages import receive_json
from graphhooks.cli import app
from graphhooks.subscriptions import when
from shared.app.lazy import Lazy
from shared.clock import utcnow
from shared.model.cursor import Mode
from shared.model.names import NOTIFICATIONS_QUEUE, TAPS_TABLE
from shared.model.resources import resource_key
from shared.stores.clients import queue_client, table_client
from shared.stores.taps import TapStore
from tests.functional.stacks import DRIVE, RESOURCE, Stack, subscribed

ROOT = Path(__file__).resolve().parents[2]


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


async def cli(settings: Path, *args: str, input: str | None = None) -> Any:
    """Run one command as an operator would, with the app's settings in ``settings``."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, ["--settings", str(settings), *args], input=input)


@pytest.fixture
def storage_settings(azurite, tmp_path) -> Path:
    """Settings with only the storage connection: enough for the storage-only commands."""
    return write_settings(tmp_path / "local.settings.json", {"AzureWebJobsStorage": azurite.connection_string})


async def stack_settings(stack: Stack, tmp_path: Path) -> Path:
    return write_settings(tmp_path / "stack.settings.json", stack.env)


# desired


async def test_desired_add_list_remove(storage_settings, azurite):
    added = await cli(storage_settings, "desired", "add", "drives/b!cli-added/root")
    assert added.exit_code == 0, added.output
    listed = await cli(storage_settings, "desired", "list")
    assert "drives/b!cli-added/root" in listed.stdout
    removed = await cli(storage_settings, "desired", "remove", "drives/b!cli-added/root")
    assert removed.exit_code == 0, removed.output
    again = await cli(storage_settings, "desired", "list")
    assert "drives/b!cli-added/root" not in again.stdout


async def test_desired_add_refuses_what_the_setting_refuses(storage_settings):
    result = await cli(storage_settings, "desired", "add", "drives/b!x/items/y")
    assert result.exit_code == 1
    assert "no change source reads it" in result.stderr
    assert "Traceback" not in result.output


async def test_a_seed_entry_cannot_be_removed_from_the_table(azurite, tmp_path):
    seed = json.dumps([{"resource": "drives/b!seeded/root"}])
    settings = write_settings(
        tmp_path / "seeded.json", {"AzureWebJobsStorage": azurite.connection_string, "GRAPH_SUBSCRIPTIONS": seed}
    )
    listed = await cli(settings, "desired", "list")
    assert "drives/b!seeded/root" in listed.stdout and "seed" in listed.stdout
    result = await cli(settings, "desired", "remove", "drives/b!seeded/root")
    assert result.exit_code == 1
    assert "GRAPH_SUBSCRIPTIONS" in result.stderr and "seed" in result.stderr


async def test_desired_list_reads_seed_entries_delivered_through_event_grid(azurite, tmp_path):
    seed = json.dumps([{"resource": "users", "delivery": "eventGrid"}])
    values = {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_SUBSCRIPTIONS": seed,
        "EVENT_GRID_AZURE_SUBSCRIPTION_ID": "8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e",
        "EVENT_GRID_RESOURCE_GROUP": "rg-app",
        "EVENT_GRID_PARTNER_TOPIC": "app-topic",
        "EVENT_GRID_LOCATION": "westeurope",
    }
    listed = await cli(write_settings(tmp_path / "grid.json", values), "desired", "list")
    assert listed.exit_code == 0, listed.output
    assert "users" in listed.stdout and "seed" in listed.stdout


async def test_desired_list_reads_a_multi_tenant_seed_naming_its_tenants(azurite, tmp_path):
    tenant = "0b0b0b0b-0000-4000-8000-000000000b0b"
    seed = json.dumps([{"resource": "users", "tenants": [tenant]}])
    values = {"AzureWebJobsStorage": azurite.connection_string, "GRAPH_SUBSCRIPTIONS": seed, "TENANT_MODE": "multi"}
    listed = await cli(write_settings(tmp_path / "multi.json", values), "desired", "list")
    assert listed.exit_code == 0, listed.output
    assert "users" in listed.stdout


async def _ready(value: Any) -> Any:
    return value


async def test_the_renew_timer_subscribes_to_entries_added_with_the_cli(stack_factory, tmp_path, monkeypatch):
    # Only DRIVE is in GRAPH_SUBSCRIPTIONS (the seed); the other drive is added with the CLI.
    stack = await subscribed(
        stack_factory, drives=[DRIVE, "b!added-later"], subscriptions=json.dumps([{"resource": RESOURCE}])
    )
    added = await cli(await stack_settings(stack, tmp_path), "desired", "add", "drives/b!added-later/root")
    assert added.exit_code == 0, added.output
    # The renew timer itself, with the stack's worker.
    monkeypatch.setattr(function_app, "worker", Lazy(lambda: _ready(stack.worker)))
    await function_app.renew(None)
    resources = sorted(s["resource"].strip("/") for s in await stack.control.subscriptions())
    assert resources == ["drives/b!added-later/root", RESOURCE]


# subscriptions


async def test_subscriptions_list_shows_each_subscription_and_no_secret(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    result = await cli(await stack_settings(stack, tmp_path), "subscriptions", "list")
    assert result.exit_code == 0, result.output
    assert RESOURCE in result.stdout and record.subscription_id in result.stdout
    assert record.client_state not in result.output


async def test_subscriptions_renew_and_delete(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    settings = await stack_settings(stack, tmp_path)
    before = await stack.record()
    renewed = await cli(settings, "subscriptions", "renew", before.subscription_id)
    assert renewed.exit_code == 0, renewed.output
    assert (await stack.record()).updated_at > before.updated_at

    deleted = await cli(settings, "subscriptions", "delete", before.subscription_id, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "still desired" in deleted.stdout
    assert await stack.control.subscriptions() == []
    assert await stack.store.list() == []

    created = await cli(settings, "subscriptions", "create", RESOURCE)
    assert created.exit_code == 0, created.output
    [sub] = await stack.control.subscriptions()
    assert (await stack.record()).subscription_id == sub["id"]


async def test_an_unknown_subscription_id_is_a_clear_error(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    result = await cli(await stack_settings(stack, tmp_path), "subscriptions", "renew", "no-such-id")
    assert result.exit_code == 1
    assert "no stored subscription has id 'no-such-id'" in result.stderr


async def test_delete_asks_first_and_a_no_keeps_the_subscription(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    result = await cli(
        await stack_settings(stack, tmp_path), "subscriptions", "delete", record.subscription_id, input="n\n"
    )
    assert result.exit_code == 1
    assert len(await stack.control.subscriptions()) == 1


# cursor


async def test_cursor_reset_runs_a_resync_pass_at_once(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    cursors = stack.worker.reconciler._sync._cursors
    before = (await cursors.load(resource_key(RESOURCE))).state

    result = await cli(await stack_settings(stack, tmp_path), "cursor", "reset", record.subscription_id)
    assert result.exit_code == 0, result.output
    assert (await cursors.load(resource_key(RESOURCE))).state.mode is Mode.RESYNC
    # The command queued the sync request itself: pumping it runs the resync to completion.
    await stack.pump(lambda: True)
    after = (await cursors.load(resource_key(RESOURCE))).state
    assert after.mode is None and after.synced_from is not None and after.synced_from > before.synced_from


async def test_cursor_reset_of_an_unknown_id_fails(storage_settings):
    result = await cli(storage_settings, "cursor", "reset", "no-such-id")
    assert result.exit_code == 1
    assert "no stored subscription" in result.stderr


# poison


async def _fill(connection: str, queue: str, texts: list[str]) -> None:
    async with queue_client(connection, queue) as client:
        await client.create_queue()
        for text in texts:
            await client.send_message(text)


async def _count(connection: str, queue: str) -> int:
    async with queue_client(connection, queue) as client:
        return (await client.get_queue_properties()).approximate_message_count


async def test_poison_replay_dry_run_moves_nothing(storage_settings, azurite, unique_name):
    queue = unique_name("dry")
    await _fill(azurite.connection_string, f"{queue}-poison", ['{"n": 1}', '{"n": 2}'])
    result = await cli(storage_settings, "poison", "replay", f"{queue}-poison", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would move 2" in result.stdout
    assert await _count(azurite.connection_string, f"{queue}-poison") == 2


async def test_poison_replay_moves_messages_back_unchanged_with_yes(storage_settings, azurite, unique_name):
    queue = unique_name("replay")
    texts = [json.dumps({"n": n}) for n in range(40)]  # more than one receive of 32
    await _fill(azurite.connection_string, f"{queue}-poison", texts)
    result = await cli(storage_settings, "poison", "replay", f"{queue}-poison", "--yes")
    assert result.exit_code == 0, result.output
    assert "moved 40" in result.stdout
    moved = await receive_json(azurite.connection_string, queue)
    assert sorted(m["n"] for m in moved) == list(range(40))
    assert await _count(azurite.connection_string, f"{queue}-poison") == 0


async def test_poison_replay_asks_first_and_a_no_moves_nothing(storage_settings, azurite, unique_name):
    queue = unique_name("ask")
    await _fill(azurite.connection_string, f"{queue}-poison", ['{"n": 1}'])
    result = await cli(storage_settings, "poison", "replay", f"{queue}-poison", input="n\n")
    assert result.exit_code == 1
    assert await _count(azurite.connection_string, f"{queue}-poison") == 1


async def test_poison_commands_cover_every_poison_queue_without_a_name(azurite_factory, tmp_path):
    private = azurite_factory()
    settings = write_settings(tmp_path / "p.json", {"AzureWebJobsStorage": private.connection_string})
    await _fill(private.connection_string, f"{NOTIFICATIONS_QUEUE}-poison", ['{"a": 1}'])
    await _fill(private.connection_string, "sink-0-webhook-poison", ['{"b": 1}', '{"b": 2}'])
    await _fill(private.connection_string, "graph-changes", ['{"c": 1}'])
    listed = await cli(settings, "poison", "list")
    assert f"{NOTIFICATIONS_QUEUE}-poison" in listed.stdout and "sink-0-webhook-poison" in listed.stdout
    assert "graph-changes " not in listed.stdout
    purged = await cli(settings, "poison", "purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert await _count(private.connection_string, "sink-0-webhook-poison") == 0
    assert await _count(private.connection_string, f"{NOTIFICATIONS_QUEUE}-poison") == 0
    assert await _count(private.connection_string, "graph-changes") == 1


async def test_a_queue_that_is_not_a_poison_queue_is_refused(storage_settings):
    result = await cli(storage_settings, "poison", "purge", "graph-changes", "--yes")
    assert result.exit_code == 1
    assert "not a poison queue" in result.stderr


# events


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


async def _line_in(path: Path, text: str, within: float) -> str:
    """The first line of the file at ``path`` that holds ``text``, waiting up to ``within`` s for it."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        for line in _read(path).splitlines():
            if text in line:
                return line
        await asyncio.sleep(0.1)
    raise AssertionError(f"no line with {text!r} in {within:.0f} s; the file holds:\n{_read(path)}")


def _why_still_running(pid: int, stderr: Path) -> str:
    """What a CLI that outlived its Ctrl-C was doing: its signal state, then its threads' stacks."""
    status = Path(f"/proc/{pid}/status")
    state = "\n".join(line for line in status.read_text().splitlines() if line.startswith(("State", "Sig", "Shd")))
    os.kill(pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
    time.sleep(2)
    return f"{state}\n{_read(stderr)}"


@pytest.mark.timeout(240)
async def test_events_tail_prints_each_event_as_json_and_closes_its_tap(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    settings = await stack_settings(stack, tmp_path)
    # Files, not pipes: the test waits for the process to end, not for every copy of a pipe to close.
    out, err = tmp_path / "tail.out", tmp_path / "tail.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "graphhooks.cli",
            "--settings",
            str(settings),
            "events",
            "tail",
            "--json",
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")},
                "PYTHONFAULTHANDLER": "1",
            },
        )
    # Generous bounds: on a loaded machine the CLI's start-up and its clean-up calls take a while.
    try:
        assert "tap-" in await _line_in(err, "tapping change events into", 60)
        item = await stack.control.create_item(DRIVE, "tapped.txt", "1")
        await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
        event = json.loads(await _line_in(out, item["id"], 60))
        assert event["itemId"] == item["id"] and event["changeType"] == "created"
        assert stack.for_item(item["id"])[0]["id"] == event["id"]  # the consumer still got it
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            raise AssertionError(f"still running 60 s after Ctrl-C:\n{_why_still_running(process.pid, err)}") from None
    assert code == 0, _read(err)
    async with table_client(stack.connection, TAPS_TABLE) as client:
        assert await TapStore(client).list() == []


async def test_a_tap_whose_queue_is_gone_never_fails_a_page(stack_factory):
    stack = await subscribed(stack_factory)
    async with table_client(stack.connection, TAPS_TABLE) as client:
        taps = TapStore(client)
        await taps.setup()
        await taps.register("tap-gone", utcnow())  # its watcher died after deleting the queue
    item = await stack.control.create_item(DRIVE, "still-delivered.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    async with queue_client(stack.connection, "tap-gone") as client:
        with pytest.raises(ResourceNotFoundError):
            await client.get_queue_properties()  # a copy never re-creates a watcher's queue


async def test_subscriptions_list_shows_when_the_last_notification_arrived(stack_factory, tmp_path):
    stack = await subscribed(stack_factory)
    record = await stack.record()
    assert await stack.store.last_notified() == {}  # the sync requested at creation is not a notification
    item = await stack.control.create_item(DRIVE, "notified.txt", "1")
    await stack.pump(lambda: len(stack.for_item(item["id"])) == 1)
    notified = (await stack.store.last_notified())[record.key]
    assert utcnow() - timedelta(minutes=1) < notified <= utcnow()
    result = await cli(await stack_settings(stack, tmp_path), "subscriptions", "list")
    assert when(notified) in result.stdout


# errors: one clear line, never a traceback, and never a long wait


def _one_line(result: Any) -> str:
    """The command failed with exactly one line on stderr, and no Python traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_a_malformed_connection_string_is_one_line_naming_the_setting(tmp_path):
    settings = write_settings(tmp_path / "bad.json", {"AzureWebJobsStorage": "AccountName=x;this is not one"})
    line = _one_line(await cli(settings, "subscriptions", "list"))
    assert line.startswith("error: invalid setting AzureWebJobsStorage: not a storage connection string")


async def test_identity_based_storage_without_a_credential_is_one_line(tmp_path):
    """A process of its own: under pytest, azure-identity's warnings would go to pytest's log capture."""
    settings = write_settings(
        tmp_path / "identity.json",
        {
            "AzureWebJobsStorage__queueServiceUri": "https://127.0.0.1:9/devstoreaccount1",
            "AzureWebJobsStorage__tableServiceUri": "https://127.0.0.1:9/devstoreaccount1",
        },
    )
    # No credential anywhere: DefaultAzureCredential tries each way, gives up, and logs each.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "AzureWebJobs"))}
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graphhooks.cli",
        "--settings",
        str(settings),
        "subscriptions",
        "list",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(done.communicate(), 60)
    assert done.returncode == 1
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, stderr.decode()  # before: azure-identity's ten lines came first
    assert lines[0].startswith("error: storage refused the credentials") and "AzureWebJobsStorage" in lines[0]


async def test_poison_list_with_storage_down_fails_in_seconds(tmp_path):
    (port,) = free_ports(1)  # nothing listens: storage is down
    down = Azurite(port, port, port).connection_string
    settings = write_settings(tmp_path / "down.json", {"AzureWebJobsStorage": down})
    started = time.monotonic()
    result = await cli(settings, "poison", "list")
    elapsed = time.monotonic() - started
    line = _one_line(result)
    assert line.startswith("error: cannot reach storage (is AzureWebJobsStorage right")
    assert elapsed < 15, f"took {elapsed:.0f} s"  # the SDK's default retries took 84-90 s


async def test_poison_list_without_a_poison_queue_says_so_once(azurite_factory, tmp_path):
    private = azurite_factory()
    settings = write_settings(tmp_path / "p.json", {"AzureWebJobsStorage": private.connection_string})
    result = await cli(settings, "poison", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == "no poison queue\n"  # no empty table first


async def test_poison_replay_moves_only_what_it_counted(storage_settings, azurite, unique_name):
    """Messages that fail again during the replay stay in the poison queue; "moving N" and "moved N" agree."""
    queue = unique_name("again")
    total = 200
    await _fill(azurite.connection_string, f"{queue}-poison", [json.dumps({"n": n}) for n in range(total)])
    stop = asyncio.Event()
    bounced: list[float] = []
    replayed_twice: list[dict[str, Any]] = []
    all_bounced = asyncio.Event()

    async def fail_again() -> None:
        # The app failing each replayed message again: it lands back in the poison queue, a new message.
        # (One that comes back a second time is taken as handled, so a replay that re-replays ends too.)
        async with (
            queue_client(azurite.connection_string, queue) as target,
            queue_client(azurite.connection_string, f"{queue}-poison") as poison,
        ):
            while not stop.is_set():
                try:
                    batch = [m async for m in target.receive_messages(messages_per_page=32, max_messages=32)]
                except ResourceNotFoundError:
                    batch = []
                for message in batch:
                    body = json.loads(message.content)
                    if body.get("again"):
                        replayed_twice.append(body)
                    else:
                        await poison.send_message(json.dumps({**body, "again": True}))
                        bounced.append(time.monotonic())
                        if len(bounced) == total:
                            all_bounced.set()
                    await target.delete_message(message)
                if not batch:
                    await asyncio.sleep(0.01)

    app_task = asyncio.create_task(fail_again())
    try:
        result = await cli(storage_settings, "poison", "replay", f"{queue}-poison", "--yes")
        finished = time.monotonic()
        assert result.exit_code == 0, result.output
        assert f"moving {total} message(s)" in result.stdout
        assert f"moved {total} message(s)" in result.stdout, result.stdout
        assert any(t < finished for t in bounced), "the app never failed a message during the replay"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_bounced.wait(), 30)
    finally:
        stop.set()
        await app_task
    assert len(bounced) == total and replayed_twice == []  # each message was replayed once, none again
    assert await _count(azurite.connection_string, f"{queue}-poison") == total
    async with queue_client(azurite.connection_string, f"{queue}-poison") as poison:
        peeked = [json.loads(m.content) for m in await poison.peek_messages(max_messages=32)]
    assert peeked and all(m.get("again") for m in peeked)  # held back by the replay, and visible again
