"""The queue trigger's holds on a tenant: throttled until its Retry-After, and at most N passes at once (pure)."""

from __future__ import annotations

from typing import Any

from shared.errors import GraphRequestError, TransientGraphError
from shared.tenants.work import BUSY_DELAY_SECONDS, DEFAULT_THROTTLE_SECONDS, MAX_THROTTLE_SECONDS, TenantWork

T = "11111111-1111-1111-1111-111111111111"
U = "22222222-2222-2222-2222-222222222222"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def work(clock: Clock, max_passes: int = 2) -> TenantWork:
    unused: Any = None
    return TenantWork(unused, unused, unused, monotonic=clock, max_passes=max_passes)


def test_a_throttled_tenant_is_held_for_its_retry_after_and_no_other_is() -> None:
    clock = Clock()
    tenants = work(clock)
    assert tenants.throttled(T, TransientGraphError("429", 429, "TooManyRequests", 12.0)) == 12.0
    assert tenants.hold(T) == 12.0
    assert tenants.hold(U) is None
    clock.now += 12.5
    assert tenants.hold(T) is None


def test_a_throttling_without_a_hint_holds_a_default_and_a_huge_hint_is_capped() -> None:
    clock = Clock()
    tenants = work(clock)
    assert tenants.throttled(T, TransientGraphError("503", 503, "", None)) == DEFAULT_THROTTLE_SECONDS
    assert tenants.throttled(U, TransientGraphError("429", 429, "", 86_400.0)) == MAX_THROTTLE_SECONDS


def test_other_failures_hold_nothing() -> None:
    tenants = work(Clock())
    assert tenants.throttled(T, GraphRequestError("403", 403, "Forbidden")) is None
    assert tenants.throttled(T, TransientGraphError("500", 500, "", 1.0)) is None
    assert tenants.throttled(T, RuntimeError("boom")) is None
    assert tenants.hold(T) is None


def test_a_tenant_with_all_its_passes_running_waits_and_others_do_not() -> None:
    tenants = work(Clock(), max_passes=2)
    with tenants.running(T), tenants.running(T):
        assert tenants.hold(T) == BUSY_DELAY_SECONDS
        assert tenants.hold(U) is None
    assert tenants.hold(T) is None


def test_a_notification_put_off_again_and_again_in_a_storm_waits_longer_each_time() -> None:
    clock = Clock()
    tenants = work(clock)
    tenants.throttled(T, TransientGraphError("429", 429, "TooManyRequests", 10.0))
    waits = [tenants.hold(T, deferrals) for deferrals in range(8)]
    assert waits[0] == 10.0  # never before the Retry-After
    assert waits == sorted(waits) and waits[-1] == MAX_THROTTLE_SECONDS
    clock.now += MAX_THROTTLE_SECONDS
    assert tenants.hold(T, 7) is None  # the storm is over: no wait at all
