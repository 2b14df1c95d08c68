"""SharePoint lists end to end: subscription, notifications, listItem delta, events with fields, 410 resync.

Real Azurite and the Graph simulator; the queue trigger is played by the stack's pump.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema

from shared.clock import parse_time, utcnow
from tests.functional.stacks import Stack

SITE = "contoso.sharepoint.com,2c712604-1370-44e7-a1f5-426573fda80a,2d2244c3-251a-49ea-93a8-39e1c3a060fe"
LIST = "22e03ef3-6ef4-424d-a1d3-92a337807c30"
RESOURCE = f"sites/{SITE}/lists/{LIST}"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())


async def list_stack(stack_factory, *options: str) -> Stack:
    stack = await stack_factory(*options, subscriptions=json.dumps([{"resource": RESOURCE, "changeType": "updated"}]))
    await stack.control.create_list(SITE, LIST, "Tasks")
    report = await stack.reconcile()
    assert (report.created, report.failed) == (1, 0)
    await stack.pump(lambda: True)  # the sync requested at creation: the baseline, silent
    return stack


def of_item(stack: Stack, item_id: str) -> list[tuple[str, str]]:
    return [(e["changeType"], e["kind"]) for e in stack.events if e["itemId"] == item_id]


async def test_a_list_subscription_is_created_with_the_list_lifetime(stack_factory):
    stack = await list_stack(stack_factory)
    [sub] = [s for s in await stack.control.subscriptions() if s["resource"] == RESOURCE]
    assert sub["changeType"] == "updated"
    lifetime = parse_time(sub["expirationDateTime"]) - utcnow()
    assert timedelta(minutes=42300 - 10) < lifetime <= timedelta(minutes=42300)
    assert stack.events == [], "the baseline indexes silently"


async def test_created_updated_deleted_items_arrive_as_list_item_events_with_their_fields(stack_factory):
    stack = await list_stack(stack_factory)
    item = await stack.control.create_list_item(SITE, LIST, {"Title": "Buy milk", "Priority": 2})
    await stack.pump(lambda: len(stack.events) >= 1)
    await stack.control.update_list_item(SITE, LIST, item["id"], {"Priority": 1})
    await stack.pump(lambda: len(stack.events) >= 2)
    await stack.control.delete_list_item(SITE, LIST, item["id"])
    await stack.pump(lambda: len(stack.events) >= 3)

    assert of_item(stack, item["id"]) == [("created", "listItem"), ("updated", "listItem"), ("deleted", "listItem")]
    created, updated, deleted = stack.events
    assert created["item"]["fields"]["Title"] == "Buy milk" and created["item"]["fields"]["Priority"] == 2
    assert updated["item"]["fields"]["Priority"] == 1
    assert deleted["item"] is None
    assert {e["containerId"] for e in stack.events} == {LIST}
    assert {e["resource"] for e in stack.events} == {RESOURCE}
    assert len({e["id"] for e in stack.events}) == 3
    for event in stack.events:
        jsonschema.validate(event, SCHEMA)


async def test_a_stale_list_token_resyncs_and_reports_what_changed_meanwhile(stack_factory):
    stack = await list_stack(stack_factory)
    kept = await stack.control.create_list_item(SITE, LIST, {"Title": "kept"})
    gone = await stack.control.create_list_item(SITE, LIST, {"Title": "gone"})
    await stack.pump(lambda: len(stack.events) >= 2)
    await stack.control.delivery(drop=True)  # these changes reach no notification
    await stack.control.delete_list_item(SITE, LIST, gone["id"])
    await stack.control.update_list_item(SITE, LIST, kept["id"], {"Title": "kept, renamed"})
    await stack.control.expire_list_tokens(SITE, LIST)
    await stack.request_sync(await stack.record())
    await stack.pump(lambda: len(stack.events) >= 4)

    resynced = stack.events[2:]
    assert sorted((e["itemId"], e["changeType"]) for e in resynced) == sorted(
        [(kept["id"], "updated"), (gone["id"], "deleted")]
    )
    assert all(e["resync"] for e in resynced)
    [renamed] = [e for e in resynced if e["changeType"] == "updated"]
    assert renamed["item"]["fields"]["Title"] == "kept, renamed"


async def test_token_latest_starts_at_now_and_the_delta_link_then_shows_later_changes(stack_factory):
    stack = await stack_factory()
    await stack.control.create_list(SITE, LIST, "Tasks")
    await stack.control.create_list_item(SITE, LIST, {"Title": "before"})
    graph = stack.worker.reconciler._graph
    path = f"sites/{SITE}/lists/{LIST}/items/delta"

    latest = await graph.fetch_path(path, {"token": "latest", "$expand": "fields"})
    assert latest["value"] == [] and "@odata.nextLink" not in latest
    after = await stack.control.create_list_item(SITE, LIST, {"Title": "after"})
    changed = await graph.fetch_url(latest["@odata.deltaLink"])
    assert [(i["id"], i["fields"]["Title"]) for i in changed["value"]] == [(after["id"], "after")]
