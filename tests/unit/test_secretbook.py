"""SecretBook: the HTTP path's cache of subscription secrets, with a fake clock and a fake table."""

from __future__ import annotations

import asyncio

import pytest

from shared.ingest.secrets import MAX_FINDS_PER_REQUEST, SecretBook

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
    """The subscriptions table's point read, counted, able to fail or hang."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        self.finds: list[str] = []
        self.fail = False
        self.in_flight = 0
        self.most_in_flight = 0
        self.find_gate: asyncio.Event | None = None  # reads wait for it while it is unset

    async def find(self, subscription_id: str) -> str | None:
        self.finds.append(subscription_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let concurrent callers interleave, as a real read would
            if self.find_gate is not None:
                await self.find_gate.wait()
            if self.fail:
                raise ConnectionError("table storage unreachable")
            return self.secrets.get(subscription_id)
        finally:
            self.in_flight -= 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table() -> FakeTable:
    return FakeTable({KNOWN: "secretClientValue"})


@pytest.fixture
def book(table, clock) -> SecretBook:
    return SecretBook(table.find, ttl=300.0, miss_interval=1.0, deadline=DEADLINE, clock=clock)


# --- the cache: one point read per id, never the whole table ------------------------------------


async def test_the_first_request_naming_an_id_reads_that_row_only(book, table):
    table.secrets.update({f"{n:08d}-0000-0000-0000-000000000001": "other" for n in range(1000)})

    lookup = await book.view({KNOWN})

    assert lookup.secret_of(KNOWN) == "secretClientValue"
    assert table.finds == [KNOWN]  # one row, whatever the table holds


async def test_later_requests_are_served_from_the_cache(book, table, clock):
    await book.view({KNOWN})
    for _ in range(5):
        clock.advance(59)
        lookup = await book.view({KNOWN})
    await book.settle()

    assert table.finds == [KNOWN]
    assert lookup.secret_of(KNOWN) == "secretClientValue"


async def test_once_the_ttl_has_passed_the_id_is_read_again_in_the_background(book, table, clock):
    await book.view({KNOWN})
    table.secrets[KNOWN] = "rotatedClientValue"
    clock.advance(300)

    during = (await book.view({KNOWN})).secret_of(KNOWN)
    await book.settle()
    after = await book.view({KNOWN})

    assert table.finds == [KNOWN, KNOWN]
    assert during == "secretClientValue"  # served at once, without waiting for the read
    assert after.secret_of(KNOWN) == "rotatedClientValue"


async def test_a_refresh_that_finds_the_subscription_gone_forgets_it(book, table, clock):
    await book.view({KNOWN})
    del table.secrets[KNOWN]
    clock.advance(300)

    await book.view({KNOWN})
    await book.settle()
    after = await book.view({KNOWN})

    assert after.secret_of(KNOWN) is None


async def test_concurrent_first_requests_share_one_read(book, table):
    lookups = await asyncio.gather(*(book.view({KNOWN}) for _ in range(10)))

    assert table.finds == [KNOWN]
    assert all(lookup.secret_of(KNOWN) == "secretClientValue" for lookup in lookups)


async def test_a_slow_refresh_never_delays_requests_and_runs_once_at_a_time(book, table, clock):
    await book.view({KNOWN})
    table.find_gate = asyncio.Event()
    clock.advance(300)

    lookups = []
    async with asyncio.timeout(1):  # had a request waited for the hanging read, it would never end
        for _ in range(20):  # 100 s of requests while the read hangs
            lookups.append(await book.view({KNOWN}))
            await asyncio.sleep(0)  # the loop runs other work between requests, the read among it
            clock.advance(5)

    assert all(lookup.secret_of(KNOWN) == "secretClientValue" for lookup in lookups)
    assert (len(table.finds), table.most_in_flight) == (2, 1)
    table.find_gate.set()
    await book.settle()
    assert table.in_flight == 0


async def test_a_failed_refresh_keeps_the_cached_value_and_retries_once_per_miss_interval(book, table, clock):
    await book.view({KNOWN})
    table.fail = True
    clock.advance(300)

    for _ in range(8):  # 2 s of requests, four per second
        lookup = await book.view({KNOWN})
        await book.settle()
        clock.advance(0.25)

    assert lookup.secret_of(KNOWN) == "secretClientValue"
    assert table.finds == [KNOWN] * (1 + 2)


async def test_beyond_the_limit_the_oldest_ids_are_forgotten_and_read_again(table, clock):
    ids = [f"{n:08d}-0000-0000-0000-000000000002" for n in range(6)]
    table.secrets.update({sid: f"value{n}" for n, sid in enumerate(ids)})
    book = SecretBook(table.find, deadline=DEADLINE, clock=clock, limit=4)
    for sid in ids:
        clock.advance(1)
        await book.view({sid})

    lookup = await book.view({ids[-1], ids[0]})

    assert lookup.secret_of(ids[-1]) == "value5" and lookup.secret_of(ids[0]) == "value0"
    assert table.finds == [*ids, ids[0]]  # the newest stayed cached; the oldest was read again


# --- ids the cache does not know ----------------------------------------------------------------


async def test_a_subscription_created_a_moment_ago_is_found_by_a_point_read(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    lookup = await book.view({NEW})

    assert lookup.secret_of(NEW) == "newClientValue"
    assert table.finds == [KNOWN, NEW]


async def test_an_id_found_by_a_point_read_is_then_served_from_the_cache(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    await book.view({NEW})
    lookup = await book.view({NEW})

    assert lookup.secret_of(NEW) == "newClientValue"
    assert table.finds == [KNOWN, NEW]


async def test_an_id_the_table_does_not_hold_looks_up_as_none(book, table):
    lookup = await book.view({STRANGER})

    assert lookup.secret_of(STRANGER) is None
    assert table.finds == [STRANGER]


async def test_an_unknown_id_is_not_read_again_within_the_miss_interval(book, table, clock):
    await book.view({STRANGER})
    clock.advance(0.5)

    lookup = await book.view({STRANGER})

    assert lookup.secret_of(STRANGER) is None
    assert table.finds == [STRANGER]


async def test_unknown_ids_are_read_at_most_once_per_miss_interval(book, table, clock):
    await book.view({KNOWN})
    for _ in range(40):  # 10 s of requests for an id no table holds, four per second
        clock.advance(0.25)
        await book.view({KNOWN, STRANGER})

    assert table.finds == [KNOWN] + [STRANGER] * 10


async def test_a_request_causes_at_most_max_finds_point_reads(book, table):
    forged = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(MAX_FINDS_PER_REQUEST * 3)]
    table.secrets[forged[-1]] = "lastClientValue"

    view = await book.view(forged)

    assert table.finds == forged[:MAX_FINDS_PER_REQUEST]
    # Beyond the cap: not read, and not taken for unknown either (the caller answers 503).
    assert view.unchecked == frozenset(forged[MAX_FINDS_PER_REQUEST:])
    assert view.why == f"more than {MAX_FINDS_PER_REQUEST} new subscription ids"


async def test_a_subscription_set_of_new_ids_is_read_in_one_request(book, table):
    members = [f"{n:08d}-5e75-4e75-8e75-000000000000" for n in range(30)]
    table.secrets.update({sid: f"member{n}" for n, sid in enumerate(members)})

    view = await book.view(members)

    assert view.unchecked == frozenset()
    assert [view.secret_of(sid) for sid in members] == [f"member{n}" for n in range(30)]


async def test_each_retry_of_a_batch_over_the_cap_reads_the_ids_not_yet_read(book, table, clock):
    ids = [f"{n:08d}-0000-4000-8000-00000000000a" for n in range(MAX_FINDS_PER_REQUEST * 2 + 10)]
    table.secrets.update({sid: "value" for sid in ids[::2]})  # every other one exists

    unchecked, reads = [], []
    for _ in range(3):  # Graph's retries, seconds apart
        before = len(table.finds)
        view = await book.view(ids)
        unchecked.append(len(view.unchecked))
        reads.append(len(table.finds) - before)
        clock.advance(5)

    assert unchecked == [MAX_FINDS_PER_REQUEST + 10, 10, 0]
    assert reads == [MAX_FINDS_PER_REQUEST] * 3  # the last one spends its spare reads on absent ids
    assert set(table.finds) == set(ids)
    assert [view.secret_of(sid) for sid in ids[:4]] == ["value", None, "value", None]


async def test_absent_ids_are_read_again_only_with_reads_to_spare(book, table, clock):
    gone = [f"{n:08d}-0000-4000-8000-00000000000b" for n in range(MAX_FINDS_PER_REQUEST)]
    await book.view(gone)  # all absent, remembered
    clock.advance(5)
    table.secrets[gone[0]] = "createdSince"
    new = [f"{n:08d}-0000-4000-8000-00000000000c" for n in range(MAX_FINDS_PER_REQUEST - 1)]

    view = await book.view([*gone, *new])

    # The new ids and one absent id fill the cap; the other absent ones count as unknown, not unchecked.
    assert view.unchecked == frozenset()
    assert table.finds[len(gone) :] == [*new, gone[0]]
    assert view.secret_of(gone[0]) == "createdSince"


async def test_concurrent_requests_naming_one_unknown_id_share_one_point_read(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"

    lookups = await asyncio.gather(*(book.view({NEW}) for _ in range(10)))

    assert table.finds == [KNOWN, NEW]
    assert all(lookup.secret_of(NEW) == "newClientValue" for lookup in lookups)


@pytest.mark.parametrize(
    "forged",
    ["a/b", "x" * 65, "\ud800", "", "quote'd", "new\nline"],
    ids=["slash", "too-long", "lone-surrogate", "empty", "quote", "control"],
)
async def test_an_id_that_cannot_be_a_subscription_id_is_never_read(book, table, forged):
    lookup = await book.view({forged})

    assert lookup.secret_of(forged) is None
    assert table.finds == []


async def test_a_failed_point_read_leaves_the_id_unchecked_and_not_remembered_as_absent(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"
    table.fail = True
    failed = await book.view({KNOWN, NEW})

    table.fail = False
    lookup = await book.view({NEW})

    assert failed.unchecked == frozenset({NEW})
    assert failed.why == "subscription secrets unavailable (ConnectionError)"
    assert failed.secret_of(KNOWN) == "secretClientValue"  # what is known still serves
    assert lookup.secret_of(NEW) == "newClientValue"
    assert table.finds == [KNOWN, NEW, NEW]


async def test_a_slow_point_read_leaves_the_id_unchecked_and_its_answer_is_kept(book, table):
    await book.view({KNOWN})
    table.secrets[NEW] = "newClientValue"
    table.find_gate = asyncio.Event()
    slow = await book.view({NEW})

    table.find_gate.set()
    await book.settle()
    lookup = await book.view({NEW})

    assert slow.unchecked == frozenset({NEW})
    assert slow.why == "subscription secrets not read in time"
    assert lookup.secret_of(NEW) == "newClientValue"
    assert table.finds == [KNOWN, NEW]
