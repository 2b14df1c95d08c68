"""SecretBook: the HTTP path's cache of subscription secrets, with a fake clock and a fake table."""

from __future__ import annotations

import asyncio

import pytest

from shared.ingest import MAX_FINDS_PER_REQUEST, SecretBook

KNOWN = "aa269f87-2a92-4cff-a43e-2771878c3727"
NEW = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
STRANGER = "00000000-0000-0000-0000-000000000000"
# Real time a request may wait for storage in these tests; the fakes block on events, not on timers.
DEADLINE = 0.05


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTable:
    """The subscriptions table: a whole-table load and a point read, counted, able to fail or hang."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        self.loads = 0
        self.finds: list[str] = []
        self.fail = False
        self.loads_in_flight = 0
        self.most_loads_in_flight = 0
        self.load_gate: asyncio.Event | None = None  # loads wait for it while it is unset
        self.find_gate: asyncio.Event | None = None

    async def load(self) -> dict[str, str]:
        self.loads += 1
        self.loads_in_flight += 1
        self.most_loads_in_flight = max(self.most_loads_in_flight, self.loads_in_flight)
        try:
            await self._pass(self.load_gate)
            return dict(self.secrets)
        finally:
            self.loads_in_flight -= 1

    async def find(self, subscription_id: str) -> str | None:
        self.finds.append(subscription_id)
        await self._pass(self.find_gate)
        return self.secrets.get(subscription_id)

    async def _pass(self, gate: asyncio.Event | None) -> None:
        await asyncio.sleep(0)  # let concurrent callers interleave, as a real read would
        if gate is not None:
            await gate.wait()
        if self.fail:
            raise ConnectionError("table storage unreachable")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table() -> FakeTable:
    return FakeTable({KNOWN: "secretClientValue"})


@pytest.fixture
def book(table, clock) -> SecretBook:
    return SecretBook(table.load, table.find, ttl=60.0, miss_interval=1.0, deadline=DEADLINE, clock=clock)


# --- the whole-table cache --------------------------------------------------------------------


async def test_the_first_request_loads_the_secrets(book, table):
    lookup = await book.view({KNOWN})

    assert table.loads == 1
    assert lookup(KNOWN) == "secretClientValue"


async def test_later_requests_are_served_from_the_cache(book, table, clock):
    await book.view({KNOWN})
    for _ in range(5):
        clock.advance(10)
        lookup = await book.view({KNOWN})

    assert (table.loads, table.finds) == (1, [])
    assert lookup(KNOWN) == "secretClientValue"


async def test_the_cache_is_not_reloaded_just_before_the_ttl(book, table, clock):
    await book.view({KNOWN})
    clock.advance(59.9)

    await book.view({KNOWN})
    await book.settle()

    assert table.loads == 1


async def test_once_the_ttl_has_passed_the_cache_is_reloaded_in_the_background(book, table, clock):
    await book.view({KNOWN})
    table.secrets[KNOWN] = "rotatedClientValue"
    clock.advance(60)

    during = await book.view({KNOWN})
    await book.settle()
    after = await book.view({KNOWN})

    assert table.loads == 2
    assert during(KNOWN) == "secretClientValue"  # served at once, without waiting for the reload
    assert after(KNOWN) == "rotatedClientValue"


async def test_concurrent_first_requests_share_one_load(book, table):
    lookups = await asyncio.gather(*(book.view({KNOWN}) for _ in range(10)))

    assert table.loads == 1
    assert all(lookup(KNOWN) == "secretClientValue" for lookup in lookups)


async def test_a_failed_first_load_is_retried_by_the_next_request(book, table):
    table.fail = True
    with pytest.raises(ConnectionError):
        await book.view({KNOWN})

    table.fail = False
    lookup = await book.view({KNOWN})

    assert table.loads == 2
    assert lookup(KNOWN) == "secretClientValue"


async def test_a_slow_first_load_times_out_the_request_but_is_not_cancelled(book, table):
    table.load_gate = asyncio.Event()
    with pytest.raises(TimeoutError):
        await book.view({KNOWN})
    with pytest.raises(TimeoutError):
        await book.view({KNOWN})  # waits for the same load; starts no other

    table.load_gate.set()
    await book.settle()
    lookup = await book.view({KNOWN})

    assert lookup(KNOWN) == "secretClientValue"
    assert (table.loads, table.most_loads_in_flight) == (1, 1)


async def test_a_slow_reload_never_delays_requests_and_runs_once_at_a_time(book, table, clock):
    await book.view({KNOWN})
    table.load_gate = asyncio.Event()
    clock.advance(60)

    lookups = []
    async with asyncio.timeout(1):  # had a request waited for the hanging reload, it would never end
        for _ in range(20):  # 100 s of requests while the reload hangs
            lookups.append(await book.view({KNOWN}))
            await asyncio.sleep(0)  # the loop runs other work between requests, the reload among it
            clock.advance(5)

    assert all(lookup(KNOWN) == "secretClientValue" for lookup in lookups)
    assert (table.loads, table.most_loads_in_flight) == (2, 1)
    table.load_gate.set()
    await book.settle()
    assert table.loads_in_flight == 0


async def test_a_failed_reload_keeps_the_cached_values_and_retries_once_per_miss_interval(book, table, clock):
    await book.view({KNOWN})
    table.fail = True
    clock.advance(60)

    for _ in range(8):  # 2 s of requests, four per second
        lookup = await book.view({KNOWN})
        await book.settle()
        clock.advance(0.25)

    assert lookup(KNOWN) == "secretClientValue"
    assert table.loads == 1 + 2


# --- ids the cache does not know ----------------------------------------------------------------


async def test_a_subscription_created_a_moment_ago_is_found_by_a_point_read(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    lookup = await book.view({NEW})

    assert lookup(NEW) == "newClientValue"
    assert (table.loads, table.finds) == (1, [NEW])  # one row read, not the whole table


async def test_an_id_found_by_a_point_read_is_then_served_from_the_cache(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    await book.view({NEW})
    lookup = await book.view({NEW})

    assert lookup(NEW) == "newClientValue"
    assert table.finds == [NEW]


async def test_an_id_the_table_does_not_hold_looks_up_as_none(book, table):
    lookup = await book.view({STRANGER})

    assert lookup(STRANGER) is None
    assert table.finds == [STRANGER]


async def test_an_unknown_id_is_not_read_again_within_the_miss_interval(book, table, clock):
    await book.view({STRANGER})
    clock.advance(0.5)

    lookup = await book.view({STRANGER})

    assert lookup(STRANGER) is None
    assert table.finds == [STRANGER]


async def test_unknown_ids_are_read_at_most_once_per_miss_interval(book, table, clock):
    await book.view({KNOWN})
    for _ in range(40):  # 10 s of requests for an id no table holds, four per second
        clock.advance(0.25)
        await book.view({KNOWN, STRANGER})

    assert table.finds == [STRANGER] * 10
    assert table.loads == 1


async def test_a_request_causes_at_most_max_finds_point_reads(book, table):
    await book.view({KNOWN})
    forged = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(50)]
    table.secrets[forged[-1]] = "lastClientValue"  # created after the load: only a point read finds it

    lookup = await book.view(forged)

    assert table.finds == forged[:MAX_FINDS_PER_REQUEST]
    assert lookup(forged[-1]) is None  # beyond the cap: unknown, without a read


async def test_concurrent_requests_naming_one_unknown_id_share_one_point_read(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    lookups = await asyncio.gather(*(book.view({NEW}) for _ in range(10)))

    assert table.finds == [NEW]
    assert all(lookup(NEW) == "newClientValue" for lookup in lookups)


@pytest.mark.parametrize(
    "forged",
    ["a/b", "x" * 65, "\ud800", "", "quote'd", "new\nline"],
    ids=["slash", "too-long", "lone-surrogate", "empty", "quote", "control"],
)
async def test_an_id_that_cannot_be_a_subscription_id_is_never_read(book, table, forged):
    lookup = await book.view({forged})

    assert lookup(forged) is None
    assert table.finds == []


async def test_a_failed_point_read_raises_and_is_not_remembered_as_absent(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"
    table.fail = True
    with pytest.raises(ConnectionError):
        await book.view({NEW})

    table.fail = False
    lookup = await book.view({NEW})

    assert lookup(NEW) == "newClientValue"
    assert table.finds == [NEW, NEW]


async def test_a_slow_point_read_times_out_the_request_and_its_answer_is_kept(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"
    table.find_gate = asyncio.Event()
    with pytest.raises(TimeoutError):
        await book.view({NEW})

    table.find_gate.set()
    await book.settle()
    lookup = await book.view({NEW})

    assert lookup(NEW) == "newClientValue"
    assert table.finds == [NEW]


async def test_a_reload_keeps_an_id_found_while_it_ran(book, table, clock):
    await book.view({KNOWN})
    table.load_gate = asyncio.Event()
    clock.advance(60)
    await book.view({KNOWN})  # starts the reload, which reads the table before NEW exists
    table.secrets[NEW] = "newClientValue"
    await book.view({NEW})
    del table.secrets[NEW]  # the reload's answer lacks it, as it would have been read earlier

    table.load_gate.set()
    await book.settle()
    lookup = await book.view({NEW})

    assert lookup(NEW) == "newClientValue"
    assert table.finds == [NEW]
