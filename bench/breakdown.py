"""Where the ingest p99 goes: the goal level again on a host that times each step of the HTTP path."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from devtools.simclient import SimControl
from devtools.stack import DEMO_DRIVE, LocalStack

from . import phases
from .harness import host_pid, running_stack, subscribe_via_host
from .posts import notification, post_level, take_stored
from .report import Row, ms, percentile, say


async def where_the_p99_goes(
    name: str, requests: int, senders: int, shapes: Sequence[int], goal: float, extra_env: dict[str, str]
) -> list[Row]:
    """``senders`` again for each shape, on a host of its own that times each step (bench.phases).

    Per step the p99, and the mean of each step over the slowest 1% of requests: which step
    makes the tail. The CPU each process used during the level tells whether the 2 cores were short.
    """
    rows: list[Row] = []
    async with (
        running_stack(f"{name}-phases", extra_env=extra_env, with_host=False) as stack,
        SimControl(stack.sim.control_url) as control,
    ):
        path = stack.run_dir / "phases.jsonl"
        phases.start_timed_host(stack, path)
        await control.create_drive(DEMO_DRIVE)
        sub = (await subscribe_via_host(stack, control, 1))[0]
        url = f"{stack.base_url}/api/notifications"
        connection = stack.azurite.connection_string
        item = notification(sub)
        await post_level(url, json.dumps({"value": [item]}).encode(), 8, 200, 1)
        await take_stored(connection, 10_000)
        offset = phases.read(path, 0)[1]
        pids = {"host": host_pid(stack), "Azurite": azurite_pid(stack), "benchmark": os.getpid()}
        for batch in shapes:
            body = json.dumps({"value": [item] * batch}).encode()
            cpu_before = {name: phases.cpu_seconds(pid) for name, pid in pids.items()}
            client_lags: list[float] = []
            ticker = asyncio.create_task(phases.lags(client_lags.append))
            try:
                level = await post_level(url, body, senders, requests, batch, tag=f"b{batch}")
            finally:
                ticker.cancel()
            cpu = {name: phases.cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            load = os.getloadavg()[0]
            await take_stored(connection, 2 * requests + 100)
            recorded, offset = phases.read(path, offset)
            split = phases.split(level.tagged, recorded.requests)
            tail = phases.slowest(split)
            p99 = {name: percentile(values, 99) for name, values in split.items()}
            shape = "1 notif/POST" if batch == 1 else f"{batch} notif/POST"
            used = ", ".join(f"{name} {seconds / level.seconds:.2f}" for name, seconds in cpu.items())
            steps = ", ".join(f"{name} {ms(p99[name])}" for name in phases.PHASES)
            made = " + ".join(f"{name} {ms(tail[name])}" for name in phases.PHASES)
            sends = f"{ms(percentile(recorded.sends, 50))} / {ms(percentile(recorded.sends, 99))}"
            hit_worst, worst, hit_all, seen = phases.caught(level.tagged, recorded)
            full = f"{hit_worst} of the slowest {worst} and {hit_all} of all {seen} requests were in flight"
            stalls = (
                f"host loop late > 5 ms {len(recorded.lags)} times (longest {ms(max(recorded.lags, default=0))}), "
                + ", ".join(
                    f"GC gen {gen}: {len(p)} pauses, longest {ms(max(p))}" for gen, p in sorted(recorded.pauses.items())
                )
                + "; "
                f"benchmark loop late {len(client_lags)} times (longest {ms(max(client_lags, default=0))})"
            )
            say(
                f"  phases {shape}, {senders} senders: p99 {ms(p99['total'])}; per step p99: {steps}; "
                f"slowest 1% ({ms(tail['total'])} mean) = {made}; {len(recorded.sends)} send_message p50 / p99 "
                f"{sends}; {stalls}; full collections: {full}; CPU cores used: {used}; load average {load:.1f}"
            )
            rows += [
                Row(name, f"{shape}, {senders} senders, timed host: p99", ms(p99["total"]), goal=f"< {ms(goal)}"),
                Row(name, "  p99 of each step", steps.replace(" ms", "") + " ms"),
                Row(name, "  slowest 1%, mean", made.replace(" ms", "") + " ms"),
                Row(name, "  send_message p50 / p99", sends),
                Row(name, "  event loops, GC", stalls),
                Row(name, "  during a full (gen 2) collection", full),
                Row(name, "  CPU cores used (of 2)", f"{used}; load average {load:.1f}"),
            ]
    return rows


def azurite_pid(stack: LocalStack) -> int:
    """The pid of the stack's Azurite (0 when unknown)."""
    process = stack.azurite.process
    return process.pid if process is not None else 0
