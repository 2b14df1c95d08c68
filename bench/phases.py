"""Where an ingest request's time goes: the local host with the HTTP path timed step by step.

``python -m bench.phases --port N`` is ``python -m devtools.host`` with timers around the
product's own steps, in that process only (nothing else changes), writing one JSON line
per notifications request to ``BENCH_PHASES_FILE``:

- **host**: the host's HTTP handler (routing, the function's request object, the
  invocation and its two log lines, function_app's glue, the reply), minus the next three;
- **check**: ``Ingest._accept`` until the request joins a group write (parse, secrets, clientState);
- **wait**: from joining to the start of the queue write that carries it (one write is in
  flight at a time: a request that arrives meanwhile waits for it, see shared/writer.py);
- **write**: from that write's start until the request's items are stored.

The client's time minus the handler's is the **rest**: the client's own event loop, the
socket, aiohttp's parsing, and the time the host's event loop took to get to the request.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("rest", "host", "check", "wait", "write")
REQUEST_HEADER = "X-Bench-Request"
FILE_SETTING = "BENCH_PHASES_FILE"
FULL = 2  # the generation whose collections walk every tracked object
_marks: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("bench_marks", default=None)


def install(path: str) -> None:
    """Wrap the host's handler, the HTTP path, the group writer and the queue's send with timers."""
    from devtools.host.http import HttpDispatcher
    from shared.ingest import group_commit as writer
    from shared.ingest.group_commit import GroupCommit
    from shared.ingest.receiver import Ingest
    from shared.model.names import NOTIFICATIONS_QUEUE
    from shared.queues.message_queue import MessageQueue, Receipt

    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the host's lifetime
    # When each group write began: GroupCommit._flush packs a group the moment it takes it, then sends
    # its messages. One flusher per writer, so in order; a request goes in the first group after it joined.
    starts: list[float] = []
    pack = writer.pack_items  # type: ignore[attr-defined]
    ticking: list[asyncio.Task[None]] = []
    collecting: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        """gc's callback: each collection's pause (the whole process stops for it)."""
        if phase == "start":
            collecting[:] = [time.perf_counter()]
        elif collecting:
            at = collecting[0]
            out.write(json.dumps({"gc": info["generation"], "at": at, "pause": time.perf_counter() - at}) + "\n")

    gc.callbacks.append(collected)

    def timed_pack(*args: Any, **kwargs: Any) -> list[str]:
        starts.append(time.perf_counter())
        return pack(*args, **kwargs)

    handle, accept, store, send = HttpDispatcher.handle, Ingest._accept, GroupCommit.store, MessageQueue.send

    async def timed_handle(self: HttpDispatcher, request: Any) -> Any:
        if not ticking:  # the host's event loop runs by now
            ticking.append(asyncio.create_task(lags(lambda lag: out.write(json.dumps({"lag": lag}) + "\n"))))
        marks = {"start": time.perf_counter()}
        token = _marks.set(marks)
        try:
            return await handle(self, request)
        finally:
            marks["end"] = time.perf_counter()
            _marks.reset(token)
            if "stored" in marks:
                first = starts[bisect.bisect_left(starts, marks["join"])]
                record = {
                    "id": request.headers.get(REQUEST_HEADER, ""),
                    "end": marks["end"],
                    "server": marks["end"] - marks["start"],
                    "host": (marks["end"] - marks["start"]) - (marks["accepted"] - marks["accept"]),
                    "check": marks["join"] - marks["accept"],
                    "wait": first - marks["join"],
                    "write": marks["stored"] - first,
                }
                out.write(json.dumps(record) + "\n")

    def timed(name: str, done: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks = _marks.get()
            if marks is not None:
                marks[name] = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                if marks is not None:
                    marks[done] = time.perf_counter()

        return wrapper

    async def timed_send(self: MessageQueue, text: str, delay_seconds: float = 0) -> Receipt:
        started = time.perf_counter()
        try:
            return await send(self, text, delay_seconds)
        finally:
            if self.name == NOTIFICATIONS_QUEUE:
                out.write(json.dumps({"send": time.perf_counter() - started}) + "\n")

    HttpDispatcher.handle = timed_handle  # type: ignore[method-assign]
    Ingest._accept = timed("accept", "accepted", accept)  # type: ignore[method-assign,assignment]
    GroupCommit.store = timed("join", "stored", store)  # type: ignore[method-assign,assignment]
    MessageQueue.send = timed_send  # type: ignore[method-assign]
    writer.pack_items = timed_pack  # type: ignore[attr-defined]


async def lags(note: Callable[[float], object], every: float = 0.005, over: float = 0.005) -> None:
    """Forever: sleep ``every`` s and ``note`` each lateness over ``over`` s (the event loop was busy)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(every)
        lag = time.perf_counter() - started - every
        if lag > over:
            note(lag)


def start_timed_host(stack: Any, path: Path) -> None:
    """Start this module as the stack's host (``with_host=False`` stacks), recording into ``path``."""
    from devtools.azurite import wait_for_port
    from devtools.launch import Child

    command = [sys.executable, "-m", "bench.phases", "--port", str(stack.host_port)]
    stack.host = Child(command, {**os.environ, **stack.env, FILE_SETTING: str(path)}, stack.run_dir / "host.log")
    wait_for_port(stack.host_port, timeout=30, process=stack.host.spawn())


@dataclass
class Recorded:
    """What the timed host wrote: per request id its steps; each send's time, GC pause and loop lag over 5 ms."""

    requests: dict[str, dict[str, float]] = field(default_factory=dict)
    sends: list[float] = field(default_factory=list)
    pauses: dict[int, list[float]] = field(default_factory=dict)  # per generation
    full: list[tuple[float, float]] = field(default_factory=list)  # each full (generation 2) collection: start, end
    lags: list[float] = field(default_factory=list)


def read(path: Path, since: int) -> tuple[Recorded, int]:
    """What was recorded after byte ``since``, and the offset to read from next time."""
    found = Recorded()
    if not path.exists():
        return found, since
    with path.open("rb") as records:
        records.seek(since)
        data = records.read()
    for line in data.decode("utf-8").splitlines():
        record = json.loads(line)
        if "send" in record:
            found.sends.append(record["send"])
        elif "gc" in record:
            found.pauses.setdefault(record["gc"], []).append(record["pause"])
            if record["gc"] == FULL:
                found.full.append((record["at"], record["at"] + record["pause"]))
        elif "lag" in record:
            found.lags.append(record["lag"])
        else:
            found.requests[record.pop("id")] = record
    return found, since + len(data)


def split(client: dict[str, float], server: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Per phase, each request's seconds (requests seen by both sides), plus ``total``, in the same order."""
    phases: dict[str, list[float]] = {name: [] for name in ("total", *PHASES)}
    for request_id, total in client.items():
        parts = server.get(request_id)
        if parts is None:
            continue
        phases["total"].append(total)
        phases["rest"].append(total - parts["server"])
        for name in PHASES[1:]:
            phases[name].append(parts[name])
    return phases


def caught(client: dict[str, float], recorded: Recorded, share: float = 0.01) -> tuple[int, int, int, int]:
    """How many requests were in flight during a full collection: of the slowest ``share``, and of all.

    A request's span on the host's clock ends when its handler did and lasts as long as the
    client waited for it (so it includes the time before the handler began).
    """
    spans = sorted(
        ((total, recorded.requests[rid]["end"]) for rid, total in client.items() if rid in recorded.requests),
        key=lambda span: span[0],
    )

    def hit(total: float, end: float) -> bool:
        return any(start < end and stop > end - total for start, stop in recorded.full)

    worst = spans[-max(1, int(len(spans) * share)) :] if spans else []
    return sum(hit(*s) for s in worst), len(worst), sum(hit(*s) for s in spans), len(spans)


def slowest(phases: dict[str, list[float]], share: float = 0.01) -> dict[str, float]:
    """The mean of each phase over the slowest ``share`` of requests (by the client's time): the tail's make-up."""
    count = len(phases["total"])
    if not count:
        return {}
    worst = sorted(range(count), key=lambda n: phases["total"][n])[-max(1, int(count * share)) :]
    return {name: sum(values[n] for n in worst) / len(worst) for name, values in phases.items()}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    install(os.environ[FILE_SETTING])
    from devtools.host.__main__ import main

    sys.exit(main(sys.argv[1:]))
