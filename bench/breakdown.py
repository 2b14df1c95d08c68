"""Where the ingest p99 goes: the goal level again on a host that times each step of the HTTP path."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from devtools.stack import LocalStack

from . import phases
from .harness import RUN_ROOT
from .memory import host_pid
from .posts import fresh_target, post_level
from .report import Row, ms, percentile, say


async def where_the_p99_goes(name: str, requests: int, senders: int, shapes: Sequence[int], goal: float) -> list[Row]:
    """``senders`` again for each shape, each on a stack of its own whose host times each step (bench.phases).

    Per step the p99, and the mean of each step over the slowest 1% of requests: which step
    makes the tail. The CPU each process used during the level tells whether the 2 cores were short.
    """
    rows: list[Row] = []
    for batch in shapes:
        path = RUN_ROOT / f"{name}-phases-{batch}.jsonl"
        path.unlink(missing_ok=True)
        async with fresh_target(f"{name}-phases", timed=path) as target:
            offset = phases.read(path, 0)[1]
            stack = target.stack
            pids = {"host": host_pid(stack), "Azurite": azurite_pid(stack), "benchmark": os.getpid()}
            body = json.dumps({"value": [target.item] * batch}).encode()
            cpu_before = {who: phases.cpu_seconds(pid) for who, pid in pids.items()}
            client_lags: list[float] = []
            ticker = asyncio.create_task(phases.lags(client_lags.append))
            try:
                level = await post_level(target.url, body, senders, requests, batch, tag=f"b{batch}")
            finally:
                ticker.cancel()
            cpu = {who: phases.cpu_seconds(pid) - cpu_before[who] for who, pid in pids.items()}
            load = os.getloadavg()[0]
            recorded = phases.read(path, offset)[0]
        path.unlink(missing_ok=True)
        split = phases.split(level.tagged, recorded.requests)
        tail = phases.slowest(split)
        p99 = {step: percentile(values, 99) for step, values in split.items()}
        shape = "1 notif/POST" if batch == 1 else f"{batch} notif/POST"
        used = ", ".join(f"{who} {seconds / level.seconds:.2f}" for who, seconds in cpu.items())
        steps = ", ".join(f"{step} {ms(p99[step])}" for step in phases.PHASES)
        made = " + ".join(f"{step} {ms(tail[step])}" for step in phases.PHASES)
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
