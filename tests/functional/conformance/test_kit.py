"""The conformance kit, over every kind: one event per change, stable ids, resyncs, a failure after every step.

Two tests per kind, each on its own stack (Azurite, the simulator, the HTTP path and
a worker): the contract (created, updated, deleted; a repeated pass; delete, restore,
delete; a resync; the schema), and the failures (a raised storage error and a killed
worker, after each step of a pass).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .faults import KILLED, RAISED, STEPS, Faults
from .harness import Kit
from .kinds import DRIVERS, EXPIRED, GONE, MISSED, Driver, Item

pytestmark = pytest.mark.timeout(300)

KINDS = [pytest.param(driver, id=driver.name) for driver in DRIVERS]


async def test_every_registered_source_has_a_driver(stack_factory):
    """A kind cannot be registered without passing the kit: each source the app registers needs a driver here."""
    stack = await stack_factory()
    sources = stack.worker.processor._sync._sources.sources
    resources = [driver.resource for driver in DRIVERS if driver.resource]
    for source in sources:
        if source.kind == "listItem" and type(source).__name__ == "SharePointListSource":
            assert any(d.name == "SharePoint REST" for d in DRIVERS)
            continue
        driven = [r for r in resources if source.handles(r)]
        assert driven, f"{type(source).__name__} ({source.kind}) has no conformance driver in kinds.py"
        assert source.kind in {d.kind for d in DRIVERS}


async def check_created_updated_deleted(kit: Kit) -> None:
    item = await kit.create()
    await kit.settle()
    assert kit.types(item) == ["created"]
    await kit.driver.update(kit.stack, item)
    await kit.settle()
    assert kit.types(item) == ["created", "updated"]
    await kit.driver.delete(kit.stack, item)
    await kit.settle()
    assert kit.types(item) == ["created", "updated", "deleted"]
    events = kit.of(item)
    assert {e["kind"] for e in events} == {kit.driver.kind}
    assert len({e["id"] for e in events}) == 3
    assert events[2]["item"] is None and all(e["item"] for e in events[:2])
    assert not any(e["resync"] for e in events)


async def check_a_repeated_pass(kit: Kit) -> None:
    first, second = await kit.create(), await kit.create()
    await kit.settle()
    await kit.driver.update(kit.stack, first)
    before = await kit.snapshot()
    await kit.settle()
    seen = {(e["id"], e["changeType"]) for e in kit.events}
    await kit.repeat(before)  # the cursor's save lost, the notifications delivered again
    assert {(e["id"], e["changeType"]) for e in kit.events} == seen, "a repeat may duplicate, never relabel"
    assert kit.types(first)[-1] == "updated" and set(kit.types(second)) == {"created"}


async def check_delete_restore_delete(kit: Kit) -> None:
    item = await kit.create()
    await kit.settle()
    for step in (kit.driver.delete, kit.driver.restore, kit.driver.delete):
        await step(kit.stack, item)
        await kit.settle()
    assert kit.types(item) == ["created", "deleted", "created", "deleted"]
    deletions = [e["id"] for e in kit.of(item) if e["changeType"] == "deleted"]
    assert len(set(deletions)) == 2, "a second deletion is a new change"


async def check_a_resync(kit: Kit) -> None:
    driver, control = kit.driver, kit.stack.control
    kept = [await kit.create() for _ in range(3)]
    changed, gone = await kit.create(), await kit.create()
    await kit.settle()
    before = len(kit.events)
    if driver.stale in (GONE, EXPIRED):
        await driver.make_stale(kit.stack)  # first: no pass may read these changes before the resync
        made = await kit.create()
        await driver.update(kit.stack, changed)
        await driver.delete(kit.stack, gone)
    else:
        assert driver.stale == MISSED
        await control.delivery(drop=True)  # Graph drops the notifications, then says so
        made = await kit.create()
        await driver.update(kit.stack, changed)
        await driver.delete(kit.stack, gone)
        await control.delivery(drop=False)
        [sub] = [s for s in await control.subscriptions() if s["resource"].strip("/") == driver.resource]
        await control.lifecycle(sub["id"], "missed")
    await kit.settle()
    assert (kit.types(made), kit.types(changed), kit.types(gone)) == (
        ["created"],
        ["created", "updated"],
        ["created", "deleted"],
    )
    assert all(kit.types(item) == ["created"] for item in kept), "unchanged items are not reported again"
    touched = {made.id, changed.id, gone.id}
    news = kit.events[before:]
    assert [e for e in news if e["itemId"] not in touched and e["kind"] == driver.kind] == [], "no flood"
    assert all(e["resync"] for e in news), "each told as found by a resync"


@pytest.mark.parametrize("driver", KINDS)
async def test_each_change_gives_one_event_under_one_id_through_repeats_restores_and_resyncs(
    driver: type[Driver], stack_factory: Any, tmp_path: Path
) -> None:
    kit = await Kit.start(driver(), stack_factory, tmp_path)
    await check_created_updated_deleted(kit)
    await check_a_repeated_pass(kit)
    await check_delete_restore_delete(kit)
    if not driver.notified_only:  # a kind told only by notifications has no delta to resync from
        await check_a_resync(kit)
    kit.check_schema()


@pytest.mark.parametrize("driver", KINDS)
async def test_a_failure_after_any_step_loses_no_change_and_relabels_none(
    driver: type[Driver], stack_factory: Any, tmp_path: Path
) -> None:
    """For each step and each failure, one pass fails once right after it; after the retry every change
    has arrived, and none under two ids."""
    kit = await Kit.start(driver(), stack_factory, tmp_path)
    rounds = [(step, mode) for mode in (RAISED, KILLED) for step in STEPS]
    items: list[tuple[Item, Item]] = [(await kit.create(), await kit.create()) for _ in rounds]
    await kit.settle()
    reached: dict[str, set[str]] = {RAISED: set(), KILLED: set()}
    for (step, mode), (existing, doomed) in zip(rounds, items, strict=True):
        made = await kit.create()
        await kit.driver.update(kit.stack, existing)
        await kit.driver.delete(kit.stack, doomed)
        faults = Faults(step, mode)
        await kit.settle(faults)
        if faults.fired:
            reached[mode].add(step)
        where = f"{driver.name}, {mode} after {step}"
        assert kit.types(made) == ["created"] * len(kit.types(made)) != [], where
        assert kit.types(existing)[-1:] == ["updated"], where
        assert kit.types(doomed)[-1:] == ["deleted"], where
        for item in (made, existing, doomed):
            ids = kit.ids_by_type(item)
            assert all(len(same) == 1 for same in ids.values()), f"{where}: {item.id} under two ids: {ids}"
    needed = {"read", "events", "index"} | (set() if driver.notified_only else {"cursor"})
    for mode, steps in reached.items():
        assert needed <= steps, f"{driver.name}, {mode}: the steps reached were {sorted(steps)}"
    kit.check_schema()
