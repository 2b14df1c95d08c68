"""End to end: Azurite, the Graph simulator and the local host running the real function app.

Everything talks real HTTP and real Storage: the simulator delivers to
/api/notifications, the host queues and processes, and the tests read the change
events off graph-changes as a consumer would. Tests that disrupt their stack
(killing the host, stopping Azurite, poisoning a message) start a private one; the
others share one stack per module and leave it as they found it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from devtools.messages import peek_count, receive_json
from devtools.stack import DEMO_DRIVE
from shared.model.names import NOTIFICATIONS_QUEUE
from shared.sync.coalescing import DEFAULT_MIN_INTERVAL
from shared.sync.synchronizer import LEASE
from tests.e2e.support import E2E, RESOURCE, eventually, notification_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "change-event.schema.json").read_text())
HOST_JSON = json.loads((ROOT / "host.json").read_text())
POISON_QUEUE = f"{NOTIFICATIONS_QUEUE}-poison"
EVENT_ID = re.compile(r"^[0-9a-f]{40}$")


def post(url: str, body: bytes = b"", content_type: str = "application/json") -> tuple[int, str, bytes]:
    """POST over real HTTP; (status, content type, body) whatever the status."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def version(event: dict[str, Any]) -> str:
    """Which version of its item an event reports (the eTag; deletions have none)."""
    return str((event["item"] or {}).get("eTag", "deleted"))


def assert_one_id_per_change(events: list[dict[str, Any]]) -> None:
    """At least once allows repeats, but one change (item and version) always carries one id."""
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event in events:
        ids[(event["itemId"], version(event))].add(event["id"])
    split = {change: found for change, found in ids.items() if len(found) > 1}
    assert not split, f"changes reported under more than one id: {split}"


def host_log(e2e: E2E) -> str:
    return (e2e.stack.run_dir / "host.log").read_text(errors="replace")


# 1 -------------------------------------------------------------------------------------------------

TOKENS = [
    "plus+sign",
    "100% percent %41 not an escape",
    "spaces  and\ttab",
    "amp&ersand=value&x",
    "slash/path/to?query#frag",
    "Non-ASCII: Zürich, ﬁle, 日本語, emoji \U0001f512",
    "Validation token: a+b c%20d&e=f/g ü€",
]


async def test_validation_handshake_echoes_the_decoded_token_over_http(e2e_factory):
    # `process` is disabled, so anything written to graph-notifications would stay there to be seen.
    e2e = await e2e_factory(extra_env={"AzureWebJobs.process.Disabled": "true"})
    for endpoint in ("notifications", "lifecycle"):
        for token in TOKENS:
            url = f"{e2e.stack.base_url}/api/{endpoint}?validationToken={urllib.parse.quote(token, safe='')}"
            status, content_type, body = await asyncio.to_thread(post, url, b"", "text/plain")
            assert status == 200, (endpoint, token, status, body)
            assert content_type.split(";")[0].strip() == "text/plain", (endpoint, content_type)
            assert body.decode("utf-8") == token, endpoint
    assert await peek_count(e2e.connection, NOTIFICATIONS_QUEUE) == 0


# 2 -------------------------------------------------------------------------------------------------


async def test_file_created_renamed_deleted_arrives_as_three_events(shared):
    sub = await shared.subscription()
    item = await shared.control.create_item(DEMO_DRIVE, "report.docx", "v1")
    await shared.changes.wait(lambda: len(shared.changes.for_item(item["id"])) >= 1, what="created event")
    await shared.control.rename_item(DEMO_DRIVE, item["id"], "report-final.docx")
    await shared.changes.wait(
        lambda: any(e["changeType"] == "updated" for e in shared.changes.for_item(item["id"])), what="rename event"
    )
    await shared.control.delete_item(DEMO_DRIVE, item["id"])
    await shared.changes.wait(
        lambda: any(e["changeType"] == "deleted" for e in shared.changes.for_item(item["id"])), what="delete event"
    )
    await shared.idle()
    await shared.changes.read()

    events = shared.changes.for_item(item["id"])
    assert_one_id_per_change(events)
    by_id = {e["id"]: e for e in events}  # at least once: a repeat carries the id it had
    distinct = sorted(by_id.values(), key=lambda e: e["observedAt"])
    assert [e["changeType"] for e in distinct] == ["created", "updated", "deleted"]
    assert distinct[0]["item"]["name"] == "report.docx"
    assert distinct[1]["item"]["name"] == "report-final.docx"
    assert distinct[2]["item"] is None
    assert len(by_id) == 3
    for event in events:
        jsonschema.validate(event, SCHEMA)
        assert EVENT_ID.match(event["id"])
        assert event["subscriptionId"] == sub["id"]
        assert event["resource"] == RESOURCE
        assert event["containerId"] == DEMO_DRIVE


# 3 -------------------------------------------------------------------------------------------------


async def test_duplicate_and_repeated_notifications_lose_nothing_and_keep_one_id_per_change(shared):
    sub = await shared.subscription()
    before = (await shared.control.stats())["delivery"]
    await shared.control.delivery(duplicates=2)
    try:
        created = await shared.control.create_items(DEMO_DRIVE, 4, prefix="dup")
        ids = list(created["ids"])
        await shared.changes.wait(
            lambda: all(shared.changes.for_item(i) for i in ids), what="an event for each of 4 new files"
        )
        # Several quick changes of one file, then Graph sending several notifications for the last one.
        target = ids[0]
        for n in range(3):
            final = await shared.control.update_item(DEMO_DRIVE, target, f"content {n}")
        extra = notification_for(sub)
        status, _, body = await asyncio.to_thread(
            post, f"{shared.stack.base_url}/api/notifications", json.dumps({"value": [extra] * 3}).encode()
        )
        assert status == 202, body
        await shared.changes.wait(
            lambda: any(version(e) == final["eTag"] for e in shared.changes.for_item(target)),
            what="the last version of the updated file",
        )
        await shared.idle()
        await shared.changes.read()
    finally:
        await shared.control.delivery(duplicates=1)

    after = (await shared.control.stats())["delivery"]
    assert after["duplicatesSent"] > before["duplicatesSent"], "the simulator sent no duplicate"
    assert after["itemsDropped"] == before["itemsDropped"]
    events = [e for e in shared.changes.events if e["itemId"] in ids]
    assert_one_id_per_change(events)
    for item_id in ids:
        kinds = {e["changeType"] for e in shared.changes.for_item(item_id)}
        assert "created" in kinds, (item_id, kinds)
    assert all(e["subscriptionId"] == sub["id"] for e in events)
    assert await peek_count(shared.connection, POISON_QUEUE) == 0


# 4 -------------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_message_that_always_fails_ends_in_poison_after_max_dequeue_count(e2e_factory):
    max_dequeue = HOST_JSON["extensions"]["queues"]["maxDequeueCount"]
    e2e = await e2e_factory()
    sub = await e2e.subscribe()
    # Past the coalescing interval of the first sync, so the change's notification runs at once.
    await asyncio.sleep(DEFAULT_MIN_INTERVAL.total_seconds() + 0.2)
    log_start = len(host_log(e2e))
    await e2e.control.fault("/delta", 500, count=1000)
    item = await e2e.control.create_item(DEMO_DRIVE, "doomed.txt", "1")

    async def poisoned() -> int:
        return await peek_count(e2e.connection, POISON_QUEUE)

    await eventually(poisoned, within=180, what="a message on graph-notifications-poison")
    [envelope] = await receive_json(e2e.connection, POISON_QUEUE)
    assert envelope["source"] == "notifications"
    assert envelope["deferrals"] == 0
    assert envelope["value"], envelope
    for notification in envelope["value"]:
        assert notification["subscriptionId"] == sub["id"]
        assert notification["resource"].strip("/") == RESOURCE
        assert notification["changeType"] == "updated"

    log = host_log(e2e)[log_start:]
    failed = re.findall(r"Executed 'Functions\.process' \(Failed", log)
    # The last attempt moves the message itself, with no expiry: the host's copy would expire in 7 days.
    assert len(failed) == max_dequeue - 1, f"{len(failed)} failed invocations, expected {max_dequeue - 1}"
    assert "moved to poison" in log
    assert f"Moving message to queue '{POISON_QUEUE}'" not in log
    faults = (await e2e.control.call("GET", "/faults"))["value"]
    assert faults[0]["hits"] >= max_dequeue  # every invocation asked Graph for the delta
    assert await peek_count(e2e.connection, NOTIFICATIONS_QUEUE) == 0
    await e2e.changes.read()
    assert e2e.changes.for_item(item["id"]) == []

    # Graph recovers: the cursor never moved, so the next change's run brings the poisoned change too.
    await e2e.control.call("DELETE", "/faults")
    later = await e2e.control.create_item(DEMO_DRIVE, "later.txt", "1")
    await e2e.changes.wait(
        lambda: bool(e2e.changes.for_item(item["id"]) and e2e.changes.for_item(later["id"])),
        what="the poisoned change and the next one",
    )


# 5 -------------------------------------------------------------------------------------------------

HOLD_SECONDS = 5


@pytest.mark.timeout(LEASE.total_seconds() + 240)
async def test_host_killed_during_a_delta_run_then_restarted_loses_no_change(e2e_factory):
    e2e = await e2e_factory(extra_env={"LOCALHOST_MESSAGE_HOLD_SECONDS": str(HOLD_SECONDS)})
    await e2e.subscribe()
    await asyncio.sleep(DEFAULT_MIN_INTERVAL.total_seconds() + 0.2)  # the change's run starts at once
    await e2e.control.fault("/delta", 429, count=1, retry_after=15)
    item = await e2e.control.create_item(DEMO_DRIVE, "survivor.txt", "1")

    async def throttled() -> bool:
        return bool((await e2e.control.stats())["faultsInjected"])

    await eventually(throttled, what="the delta run being throttled")
    assert e2e.stack.host is not None
    await asyncio.to_thread(e2e.stack.host.kill)  # mid-run: waiting out Retry-After
    await e2e.changes.read()
    assert e2e.changes.for_item(item["id"]) == [], "the run finished before the kill: nothing was in flight"
    assert await peek_count(e2e.connection, NOTIFICATIONS_QUEUE) >= 1, "the running message is gone"

    await asyncio.to_thread(e2e.stack.start_host)
    # The killed run still holds the drive's cursor lease; the message comes back after the
    # host's hold and is deferred until that lease runs out.
    await e2e.changes.wait(
        lambda: bool(e2e.changes.for_item(item["id"])),
        within=LEASE.total_seconds() + 120,
        what="the change whose run was killed",
    )
    await e2e.idle()
    await e2e.changes.read()
    events = e2e.changes.for_item(item["id"])
    assert {e["changeType"] for e in events} == {"created"}
    assert len({e["id"] for e in events}) == 1
    assert await peek_count(e2e.connection, POISON_QUEUE) == 0


async def test_host_killed_while_repairing_a_removed_subscription_finishes_after_restart(e2e_factory):
    e2e = await e2e_factory(extra_env={"LOCALHOST_MESSAGE_HOLD_SECONDS": str(HOLD_SECONDS)})
    old = await e2e.subscribe()
    # Graph removes the subscription and says so; the repair's first call is throttled, and the host dies.
    await e2e.control.fault("/subscriptions", 429, count=1, retry_after=15)
    await e2e.control.lifecycle(old["id"], "subscriptionRemoved")

    async def throttled() -> bool:
        return bool((await e2e.control.stats())["faultsInjected"])

    await eventually(throttled, what="the repair being throttled")
    assert e2e.stack.host is not None
    await asyncio.to_thread(e2e.stack.host.kill)
    assert await e2e.control.subscriptions() == [], "the repair finished before the kill"
    # No subscription: this change reaches no notification; only the finished repair's resync finds it.
    item = await e2e.control.create_item(DEMO_DRIVE, "made-while-down.txt", "1")

    await asyncio.to_thread(e2e.stack.start_host)
    new = await e2e.subscription(other_than=old["id"])
    await e2e.changes.wait(lambda: bool(e2e.changes.for_item(item["id"])), what="the change made while unsubscribed")
    assert all(e["subscriptionId"] == new["id"] for e in e2e.changes.for_item(item["id"]))
    await e2e.idle()
    assert await peek_count(e2e.connection, POISON_QUEUE) == 0


# 6 -------------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_storage_down_answers_503_and_every_change_arrives_after_it_returns(e2e_factory):
    e2e = await e2e_factory(
        persistent_storage=True, sim_options=("--retry-base-seconds", "0.5", "--retry-max-seconds", "4")
    )
    sub = await e2e.subscribe()
    before = (await e2e.control.stats())["delivery"]

    await asyncio.to_thread(e2e.stack.azurite.stop)
    names = ["while-down-1.txt", "while-down-2.txt", "while-down-3.txt"]
    items = [await e2e.control.create_item(DEMO_DRIVE, name, "1") for name in names]
    renamed = await e2e.control.rename_item(DEMO_DRIVE, items[0]["id"], "while-down-1-renamed.txt")

    batch = {"value": [notification_for(sub)]}
    status, _, body = await asyncio.to_thread(
        post, f"{e2e.stack.base_url}/api/notifications", json.dumps(batch).encode()
    )
    assert status == 503, (status, body)

    async def graph_saw_503() -> bool:
        failures = (await e2e.control.stats())["delivery"]["failures"]
        return int(failures.get("503", 0)) > int(before["failures"].get("503", 0))

    await eventually(graph_saw_503, what="the simulator's deliveries answered 503")

    await asyncio.to_thread(e2e.stack.azurite.start)
    ids = [i["id"] for i in items]
    await e2e.changes.wait(
        lambda: (
            all(e2e.changes.for_item(i) for i in ids)
            and any(version(e) == renamed["eTag"] for e in e2e.changes.for_item(ids[0]))
        ),
        within=120,
        what="every change made while storage was down",
    )
    await e2e.idle(within=120)
    after = (await e2e.control.stats())["delivery"]
    assert after["itemsDropped"] == before["itemsDropped"]
    final = [e for e in e2e.changes.for_item(ids[0]) if version(e) == renamed["eTag"]]
    assert final[-1]["item"]["name"] == "while-down-1-renamed.txt"
    for item_id in ids[1:]:
        assert {e["changeType"] for e in e2e.changes.for_item(item_id)} == {"created"}
    assert_one_id_per_change(e2e.changes.events)


# 7 -------------------------------------------------------------------------------------------------


async def test_subscription_deleted_at_graph_is_recreated_by_renew_and_changes_flow(shared):
    old = await shared.subscription()
    await shared.control.drop_subscription(old["id"])
    gap = await shared.control.create_item(DEMO_DRIVE, "in-the-gap.txt", "1")  # no subscription: no notification

    await asyncio.to_thread(shared.stack.run_function, "renew")
    new = await shared.subscription(other_than=old["id"])
    assert new["clientState"] != old["clientState"]
    await shared.changes.wait(lambda: bool(shared.changes.for_item(gap["id"])), what="the change made in the gap")

    later = await shared.control.create_item(DEMO_DRIVE, "after-recreation.txt", "1")
    await shared.changes.wait(lambda: bool(shared.changes.for_item(later["id"])), what="a change after re-creation")
    for event in shared.changes.for_item(gap["id"]) + shared.changes.for_item(later["id"]):
        assert event["subscriptionId"] == new["id"]
        assert event["changeType"] == "created"


# 8 -------------------------------------------------------------------------------------------------


def run_demo(tmp_path: Path, *options: str) -> str:
    """Run ``python -m devtools.demo --once`` with ``options``; its output, once it exited 0."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", *options, "--once", "--run-dir", str(tmp_path / "demo")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)  # the demo stops what it started
            try:
                demo.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.communicate()
    text = output.decode(errors="replace")
    assert demo.returncode == 0, text
    return text


@pytest.mark.timeout(240)
def test_demo_once_shows_the_file_events(tmp_path):
    text = run_demo(tmp_path)
    for change, name in [
        ("created", "Quarterly report.docx"),
        ("updated", "Quarterly report (final).docx"),
        ("deleted", "(deleted)"),
    ]:
        assert re.search(rf"\b{change}\s+\w+\s+{re.escape(name)}", text), (change, name, text)
    assert "Stopping" in text


@pytest.mark.timeout(240)
def test_demo_with_three_tenants_shows_each_tenants_events_side_by_side(tmp_path):
    text = run_demo(tmp_path, "--tenants", "3")
    ids = dict(re.findall(r"^\s+(\w+)\s+tenantId ([0-9a-f-]{36})", text, re.M))
    assert sorted(ids) == ["Contoso", "Fabrikam", "Northwind"], text
    assert len(set(ids.values())) == 3
    # Fabrikam came through the admin consent flow; the others through the CLI.
    assert re.search(rf"/api/consent answered 200: Fabrikam \(tenant {ids['Fabrikam']}\) is connected", text), text
    assert text.count("$ graphhooks tenants add") == 2
    for column, name in enumerate(["Contoso", "Fabrikam", "Northwind"]):
        for change in ("created", "updated"):
            # Each event in its own tenant's column, carrying that tenant's id.
            cell = rf"{change}\s+{name}\.docx\s+{ids[name][:8]}"
            assert re.search(rf"^\[[\d:]+\] (?:[^|]*\| ){{{column}}}{cell}", text, re.M), (name, change, text)
    assert "Stopping" in text


@pytest.mark.timeout(240)
def test_demo_through_event_grid_shows_the_file_events_delivered_as_cloudevents(tmp_path):
    text = run_demo(tmp_path, "--event-grid")
    assert "through Event Grid" in text and "/runtime/webhooks/eventgrid?functionName=eventgrid" in text, text
    for change, name in [("created", "Quarterly report.docx"), ("deleted", "(deleted)")]:
        assert re.search(rf"\b{change}\s+\w+\s+{re.escape(name)}", text), (change, name, text)
    assert "Stopping" in text
