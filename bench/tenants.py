"""Many tenants, one deployment (issue 15's goals): the ramp of 1,000 tenants x 5 subscriptions, the HTTP path's
p99 with their 5,000 subscriptions stored against 5, a worker's memory at 1,000 tenants against one tenant's,
and one tenant in a 429 storm beside calm ones (tenant_storm.py). ``--quick``: 100 tenants, a 60 s storm.

The ramp is the renew timer's first tick after onboarding (shared/tenants/renewal.py: tenants
16 at a time, each within its deadline), run in this process against a simulator that takes
200 ms per subscription write and limits each tenant to 500 writes per 20 s, as Graph does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from devtools.simclient import SimControl
from devtools.stack import LocalStack
from shared.app.worker import build_worker
from shared.clock import utcnow
from shared.model.names import SUBSCRIPTIONS_TABLE
from shared.model.subscription import ACTIVE, SubscriptionRecord
from shared.stores.clients import table_client
from shared.stores.desired import desired_subscriptions
from shared.stores.subscriptions import SubscriptionStore
from shared.tenants.renewal import CONCURRENCY, TENANT_DEADLINE_SECONDS

from . import tenant_storm
from .harness import PROCESS_DISABLED, drive_subscriptions, running_stack
from .posts import NO_TICK, post_level, take_stored
from .report import Row, ms, percentile, say
from .tenant_fleet import MULTI, TenantTimes, onboard, sim_tenants, tenant_ids, time_reconcilers
from .tenant_memory import run_in_process, trust_store
from .writes import GRAPH_LIMIT, WRITE_LATENCY_MS, handshake_server

NAME = "tenants"
DRIVES = [f"tb-drive-{n}" for n in range(5)]  # the same 5 drive ids in every tenant: 5 templates
MEMORY_GOAL_MB = 50.0
P99_GOAL = 0.100
SENDERS = 32
# The host runs only what the benchmark asks: no queue trigger beside the POSTs, no timer tick of its own.
HOST_ENV = {**PROCESS_DISABLED, "RENEW_SCHEDULE": NO_TICK}
MB = 1024 * 1024


async def run(quick: bool) -> list[Row]:
    """The fleet's figures, then the storm's."""
    count = 100 if quick else 1000
    requests = 400 if quick else 2000
    fleet = await fleet_figures(count, requests)
    return fleet + await tenant_storm.run(quick)


@contextlib.asynccontextmanager
async def fleet_stack(name: str, env: dict[str, str]) -> AsyncIterator[tuple[LocalStack, SimControl]]:
    """A stack with no host yet, Graph's write latency, the 5 templates; handshakes answered here until the host."""
    sim_options = ("--write-latency-ms", str(WRITE_LATENCY_MS))
    async with (
        running_stack(name, sim_options=sim_options, with_host=False, subscriptions=drive_subscriptions(DRIVES),
                      extra_env={**HOST_ENV, **env}) as stack,
        SimControl(stack.sim.control_url) as control,
    ):  # fmt: skip
        yield stack, control


async def fleet_figures(count: int, requests: int) -> list[Row]:
    """Stack A: ``count`` tenants ramped, its worker's memory, its HTTP path; stack B: one tenant, the baselines."""
    tenants = tenant_ids(count, 1)
    async with fleet_stack(f"{NAME}-fleet", MULTI) as (stack, control):
        async with handshake_server(stack.host_port):
            started = time.monotonic()
            await onboard(control, stack.azurite.connection_string, tenants, DRIVES)
            say(f"  {count} tenants onboarded ({len(DRIVES)} drives each) in {time.monotonic() - started:.0f} s")
            rows = await ramp(stack, control, tenants)
            multi = await asyncio.to_thread(run_in_process, trust_store(stack.env, stack.run_dir))
            as_run = await asyncio.to_thread(run_in_process, stack.env)
            for how, got in (("trust store", multi), ("AZURE_AUTHORITY_CA_FILE", as_run)):
                say(
                    f"  worker with {got['live']} tenants live ({how}): {got['after'] / MB:.1f} MB after a tick "
                    f"(ticks {got['tick']:.1f} s, {got['again']:.1f} s; {got['built'] / MB:.1f} MB built; "
                    f"{got['tls']} TLS connections open)"
                )
        many = await http_path(stack, requests)
    async with fleet_stack(f"{NAME}-single", {}) as (stack, control):
        async with handshake_server(stack.host_port):
            for drive in DRIVES:
                await control.create_drive(drive)
            worker = await build_worker(stack.env)
            try:
                await worker.renew(utcnow())
            finally:
                await worker.close()
            single = await asyncio.to_thread(run_in_process, trust_store(stack.env, stack.run_dir))
            say(f"  single-tenant worker: {single['after'] / MB:.1f} MB after a tick "
                f"({single['built'] / MB:.1f} MB built)")  # fmt: skip
        few = await http_path(stack, requests)
    extra = (multi["after"] - single["after"]) / MB
    rows += [
        Row(NAME, f"HTTP p50 / p99 at {SENDERS} senders, {many.stored_subscriptions:,} subscriptions, {count} tenants",
            f"{ms(many.p50)} / {ms(many.p99)}; {many.refused} not 202; {many.stored} / {many.accepted} stored",
            f"{ms(few.p50)} / {ms(few.p99)} with {few.stored_subscriptions}", f"{many.p99 / few.p99:.2f}x p99",
            f"p99 < {ms(P99_GOAL)}, none lost", many.p99 < P99_GOAL and many.stored >= many.accepted),
        Row(NAME, f"worker RSS after a tick: {multi['live']} tenants live vs single-tenant worker (trust store)",
            f"{multi['after'] / MB:.1f} MB (built {multi['built'] / MB:.1f} MB, peak {multi['peak'] / MB:.1f} MB)",
            f"{single['after'] / MB:.1f} MB", f"+{extra:.1f} MB", f"<= +{MEMORY_GOAL_MB:.0f} MB",
            extra <= MEMORY_GOAL_MB if count >= 1000 else None),
        Row(NAME, f"  a renew tick with nothing to create, {multi['live']} tenants (the worker's second tick)",
            f"{multi['again']:.1f} s (first tick {multi['tick']:.1f} s)", f"{single['again']:.1f} s single-tenant"),
        Row(NAME, "  the same with AZURE_AUTHORITY_CA_FILE (as the simulator's stacks run)",
            f"{as_run['after'] / MB:.1f} MB; {as_run['tls']} TLS connections open (vs {multi['tls']})",
            f"{single['after'] / MB:.1f} MB", f"+{(as_run['after'] - single['after']) / MB:.1f} MB"),
    ]  # fmt: skip
    return rows


async def ramp(stack: LocalStack, control: SimControl, tenants: list[str]) -> list[Row]:
    """The first tick after onboarding: every tenant's 5 subscriptions created, timed tenant by tenant."""
    worker = await build_worker(stack.env)
    try:
        renewal = worker.tenants
        assert renewal is not None  # TENANT_MODE=multi
        times = TenantTimes()
        time_reconcilers(renewal, times)
        desired = await desired_subscriptions(worker.settings.subscriptions, worker.desired)
        t0, cpu0 = time.monotonic(), time.process_time()
        report = await renewal.tick(desired, utcnow())
        t1, cpu = time.monotonic(), time.process_time() - cpu0
        await worker.sweeper.sweep(utcnow())
        t2 = time.monotonic()
    finally:
        await worker.close()
    sim = await sim_tenants(control)
    per_tenant = {t: sim.get(t, {}) for t in tenants}
    active = {t: int(s.get("subscriptionsActive", 0)) for t, s in per_tenant.items()}
    throttled = sum(int(s.get("throttled", 0)) for s in per_tenant.values())
    writes = sum(int(s.get("subscriptionWrites", 0)) for s in per_tenant.values())
    starved = [t for t, n in active.items() if n == 0]
    short = [t for t, n in active.items() if 0 < n < len(DRIVES)]
    created, failed = sum(times.created.values()), sum(times.failed.values())
    done = sorted(times.done[t] - t0 for t in tenants if t in times.done)
    spans = [times.done[t] - times.started[t] for t in tenants if t in times.done and t in times.started]
    gaps = [b - a for a, b in itertools.pairwise(done)]
    tick = t1 - t0
    # The least a tick can take: the tenants 16 at a time, each one round of concurrent 200 ms writes.
    floor = -(-len(tenants) // CONCURRENCY) * WRITE_LATENCY_MS / 1000
    expected = len(tenants) * len(DRIVES)
    say(f"  ramp: {created} created, {failed} failed in {tick:.1f} s (sweep {t2 - t1:.1f} s); {report}")
    say(f"  per tenant: done first {done[0]:.1f} s, median {statistics.median(done):.1f} s, last {done[-1]:.1f} s, "
        f"largest gap {max(gaps, default=0):.2f} s; own reconcile p50 {ms(percentile(spans, 50))}, "
        f"max {ms(max(spans))}; this process's CPU {cpu:.0f} s; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    return [
        Row(NAME, f"ramp: {len(tenants)} tenants x {len(DRIVES)} subscriptions, first tick ({WRITE_LATENCY_MS} ms)",
            f"{tick:.1f} s; {created} created, {failed} failed; {sum(active.values())} live at Graph, {writes} writes",
            f"floor {floor:.0f} s", f"{tick / floor:.1f}x floor", f"all {expected}, none failed",
            created == expected and failed == 0 and sum(active.values()) == expected),
        Row(NAME, "  ramp: Graph's per-tenant write limit refusals (429)", str(throttled),
            goal=f"0 (<= {GRAPH_LIMIT} per 20 s per tenant)", met=throttled == 0),
        Row(NAME, "  ramp: tenant done after (first / median / last), largest gap",
            f"{done[0]:.1f} / {statistics.median(done):.1f} / {done[-1]:.1f} s, gap {max(gaps, default=0):.2f} s",
            f"{CONCURRENCY} tenants at a time"),
        Row(NAME, "  ramp: the tick's CPU (the worker's process) / its time", f"{cpu:.0f} s / {tick:.0f} s"),
        Row(NAME, "  ramp: a tenant's own reconcile p50 / max; past the deadline",
            f"{ms(percentile(spans, 50))} / {ms(max(spans))}; {report.timed_out} timed out, {report.failed} failed",
            goal=f"< {TENANT_DEADLINE_SECONDS:.0f} s each", met=report.timed_out == 0 and report.failed == 0),
        Row(NAME, "  ramp: tenants starved (0 subscriptions) / short of 5", f"{len(starved)} / {len(short)}",
            goal="0 / 0", met=not starved and not short),
    ]  # fmt: skip


class HttpFigures:
    """The HTTP path's latencies and what it stored."""

    def __init__(self, latencies: list[float], refused: int, accepted: int, stored: int, subscriptions: int) -> None:
        self.p50, self.p99 = percentile(latencies, 50), percentile(latencies, 99)
        self.refused, self.accepted, self.stored = refused, accepted, stored
        self.stored_subscriptions = subscriptions


async def http_path(stack: LocalStack, requests: int) -> HttpFigures:
    """Start the host; POST one notification per request for the stored subscriptions in turn, 32 senders."""
    async with table_client(stack.azurite.connection_string, SUBSCRIPTIONS_TABLE) as client:
        records = [r for r in await SubscriptionStore(client).list() if r.status == ACTIVE and r.subscription_id]
    await asyncio.to_thread(stack.start_host)
    url = f"{stack.base_url}/api/notifications"
    home = stack.env["GRAPH_TENANT_ID"].lower()
    # One subscription of each tenant in turn (the drive index rotates), so every tenant is named.
    by_tenant: dict[str, list[SubscriptionRecord]] = {}
    for record in sorted(records, key=lambda r: r.key):
        by_tenant.setdefault(record.tenant or home, []).append(record)
    chosen = [subs[n % len(subs)] for n, subs in enumerate(by_tenant.values())]
    if len(chosen) < len(DRIVES):
        chosen = [r for subs in by_tenant.values() for r in subs]
    bodies = [json.dumps({"value": [item(r, r.tenant or home)]}).encode() for r in chosen]
    # Warm-up: each sampled id once (its clientState read, then cached), as in the ingest benchmark.
    await post_level(url, bodies, 8, len(bodies), 1)
    await take_stored(stack.azurite.connection_string, 10 * len(bodies) + 100)
    level = await post_level(url, bodies, SENDERS, requests, 1)
    _, stored = await take_stored(stack.azurite.connection_string, 2 * requests + 100)
    say(f"  HTTP, {len(records)} subscriptions ({len(by_tenant)} tenants): p50 {ms(percentile(level.latencies, 50))}, "
        f"p99 {ms(percentile(level.latencies, 99))}, {level.failures} not 202, {stored} stored")  # fmt: skip
    return HttpFigures(level.latencies, level.failures, level.requests - level.failures, stored, len(records))


def item(record: SubscriptionRecord, tenant: str) -> dict[str, Any]:
    """A valid notification for ``record``, as Graph sends one for a drive: its tenant and clientState."""
    expires = record.expires_at or utcnow()
    return {
        "subscriptionId": record.subscription_id,
        "subscriptionExpirationDateTime": expires.isoformat().replace("+00:00", "Z"),
        "changeType": "updated",
        "resource": record.resource,
        "clientState": record.client_state,
        "tenantId": tenant,
    }
