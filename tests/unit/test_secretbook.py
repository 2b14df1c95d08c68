"""SecretBook: the HTTP path's cache of subscription secrets, with a fake clock and a counting loader."""

from __future__ import annotations

import asyncio

import pytest

from shared.ingest import SecretBook

KNOWN = "aa269f87-2a92-4cff-a43e-2771878c3727"
NEW = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
STRANGER = "00000000-0000-0000-0000-000000000000"


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingLoader:
    """Serves the current table contents and counts the reads."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        self.calls = 0
        self.fail = False

    async def __call__(self) -> dict[str, str]:
        self.calls += 1
        await asyncio.sleep(0)  # let concurrent callers interleave, as a real read would
        if self.fail:
            raise ConnectionError("table storage unreachable")
        return dict(self.secrets)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader({KNOWN: "secretClientValue"})


@pytest.fixture
def book(loader, clock) -> SecretBook:
    return SecretBook(loader, ttl=60.0, miss_interval=1.0, clock=clock)


async def test_the_first_request_loads_the_secrets(book, loader):
    lookup = await book.view({KNOWN})

    assert loader.calls == 1
    assert lookup(KNOWN) == "secretClientValue"


async def test_an_id_the_table_does_not_hold_looks_up_as_none(book):
    lookup = await book.view({KNOWN})

    assert lookup(STRANGER) is None


async def test_later_requests_are_served_from_the_cache(book, loader, clock):
    await book.view({KNOWN})
    for _ in range(5):
        clock.advance(10)
        lookup = await book.view({KNOWN})

    assert loader.calls == 1
    assert lookup(KNOWN) == "secretClientValue"


async def test_the_cache_is_not_refreshed_just_before_the_ttl(book, loader, clock):
    await book.view({KNOWN})
    clock.advance(59.9)

    await book.view({KNOWN})

    assert loader.calls == 1


async def test_the_cache_is_refreshed_once_the_ttl_has_passed(book, loader, clock):
    await book.view({KNOWN})
    loader.secrets[KNOWN] = "rotatedClientValue"
    clock.advance(60)

    lookup = await book.view({KNOWN})

    assert loader.calls == 2
    assert lookup(KNOWN) == "rotatedClientValue"


async def test_a_subscription_created_elsewhere_is_found_after_the_miss_interval(book, loader, clock):
    await book.view({KNOWN})
    loader.secrets[NEW] = "newClientValue"
    clock.advance(1.0)

    lookup = await book.view({NEW})

    assert loader.calls == 2
    assert lookup(NEW) == "newClientValue"


async def test_an_unknown_id_does_not_reload_within_the_miss_interval(book, loader, clock):
    await book.view({KNOWN})
    clock.advance(0.5)

    lookup = await book.view({STRANGER})

    assert loader.calls == 1
    assert lookup(STRANGER) is None


async def test_unknown_ids_reload_at_most_once_per_miss_interval(book, loader, clock):
    await book.view({KNOWN})
    for _ in range(40):  # 10 s of requests for an id no table holds, four per second
        clock.advance(0.25)
        await book.view({KNOWN, STRANGER})

    assert loader.calls == 1 + 10


async def test_known_ids_never_cause_a_reload_before_the_ttl(book, loader, clock):
    await book.view({KNOWN})
    for _ in range(50):
        clock.advance(1.0)
        await book.view({KNOWN})

    assert loader.calls == 1


async def test_concurrent_first_requests_share_one_load(book, loader):
    lookups = await asyncio.gather(*(book.view({KNOWN}) for _ in range(10)))

    assert loader.calls == 1
    assert all(lookup(KNOWN) == "secretClientValue" for lookup in lookups)


async def test_a_failed_load_is_retried_by_the_next_request(book, loader):
    loader.fail = True
    with pytest.raises(ConnectionError):
        await book.view({KNOWN})

    loader.fail = False
    lookup = await book.view({KNOWN})

    assert loader.calls == 2
    assert lookup(KNOWN) == "secretClientValue"
