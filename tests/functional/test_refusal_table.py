"""The refusals table against a real Azurite: background flushes, a flush that fails and is retried, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from devtools.azurite import Azurite, free_port
from shared.clock import utcnow
from shared.refusals import Ledger, Reason, Row, bucket_key, bucket_of
from shared.stores.clients import table_client
from shared.stores.refusals import RefusalFlusher, RefusalTable


@pytest.fixture
async def client(azurite: Azurite, unique_name: Callable[[str], str]) -> AsyncIterator[object]:
    async with table_client(azurite.connection_string, unique_name("refusals")) as made:
        yield made


async def rows(client: object) -> dict[str, int]:
    """Every row as "bucket/instance|reason" -> count; none before the table exists."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return {f"{e['PartitionKey']}/{e['RowKey']}": e["Count"] async for e in client.list_entities()}  # type: ignore[attr-defined]
    except ResourceNotFoundError:
        return {}


async def test_a_flusher_writes_one_row_per_bucket_instance_and_reason_in_the_background(client: object) -> None:
    ledger = Ledger("instance1")
    flusher = RefusalFlusher(RefusalTable(client), interval=0.05, counts=ledger).start()  # type: ignore[arg-type]
    try:
        ledger.add(Reason.BAD_CLIENT_STATE, 2, utcnow())
        ledger.add(Reason.UNKNOWN_SUBSCRIPTION, 1, utcnow())
        bucket = bucket_key(bucket_of(utcnow()))
        for _ in range(100):  # the first background flush, within 5 s
            if len(await rows(client)) == 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no background flush")
        ledger.add(Reason.BAD_CLIENT_STATE, 1, utcnow())
    finally:
        await flusher.close()  # what is left goes with the close

    written = await rows(client)
    # The bucket may have turned between the adds: sum by row suffix.
    assert sum(n for key, n in written.items() if key.endswith("/instance1|badClientState")) == 3
    assert sum(n for key, n in written.items() if key.endswith("/instance1|unknownSubscription")) == 1
    assert f"{bucket}/instance1|badClientState" in written


async def test_a_failed_flush_is_logged_and_its_counts_go_with_the_next(
    client: object, azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger("instance1")
    ledger.add(Reason.MALFORMED, 3, utcnow())
    dead = azurite.connection_string.replace(f":{azurite.table_port}/", f":{free_port()}/")
    async with table_client(dead, "refusals", retry_total=0) as unreachable:
        assert await RefusalFlusher(RefusalTable(unreachable), counts=ledger).flush() is False
    assert "refusal counts not flushed (ServiceRequestError)" in caplog.text

    assert await RefusalFlusher(RefusalTable(client), counts=ledger).flush() is True  # type: ignore[arg-type]
    assert list((await rows(client)).values()) == [3]


async def test_buckets_older_than_two_days_are_pruned(client: object) -> None:
    table = RefusalTable(client)  # type: ignore[arg-type]
    now = utcnow()
    old, recent = bucket_key(bucket_of(now - timedelta(days=3))), bucket_key(bucket_of(now - timedelta(hours=30)))
    await table.write("a", [Row(old, Reason.MALFORMED, 1), Row(recent, Reason.MALFORMED, 2)])
    await table.write("b", [Row(old, Reason.UNKNOWN_SUBSCRIPTION, 5)])

    assert await table.prune(now) == 2

    assert await rows(client) == {f"{recent}/a|malformed": 2}
    assert (await table.totals(now)).last_day == {}  # 30 hours old: kept, but outside the day health shows
