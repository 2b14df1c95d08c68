"""``python -m bench``: run the benchmarks and print one table of figures against the goals.

Figures, not tests: nothing asserts. Each benchmark starts (and always stops)
its own Azurite, Graph simulator and local host, and measures its baseline in
the same run, since absolute numbers on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable

from . import coalescing, eventgrid, ingest, largedrive, latency, renewal, rich, sets, sinks, startup, tenants
from .report import Row, machine, say, table

Benchmark = Callable[[bool], Awaitable[list[Row]]]
BENCHMARKS: dict[str, Benchmark] = {
    startup.NAME: startup.run,
    ingest.NAME: ingest.run,
    coalescing.NAME: coalescing.run,
    latency.NAME: latency.run,
    renewal.NAME: renewal.run,
    largedrive.NAME: largedrive.run,
    sets.NAME: sets.run,
    sinks.NAME: sinks.run,
    rich.NAME: rich.run,
    tenants.NAME: tenants.run,
    eventgrid.NAME: eventgrid.run,
}


async def run_all(names: list[str], quick: bool) -> list[Row]:
    """Run ``names`` in order; a failing benchmark gives an error row, the others still run."""
    rows: list[Row] = []
    for name in names:
        say(f"\n== {name} ==")
        started = time.monotonic()
        try:
            rows += await BENCHMARKS[name](quick)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            rows.append(Row(name, "ERROR", f"{type(exc).__name__}: {exc}"[:100], met=False))
        say(f"   ({name} took {time.monotonic() - started:.0f} s)")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse the options, print the machine, run, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only NAME (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller counts: about 2 minutes in all")
    args = parser.parse_args(argv)
    # msgraph-sdk's generated builders warn about their own deprecated classes on every call.
    warnings.filterwarnings("ignore", "This class is deprecated", DeprecationWarning)
    say(f"Machine: {machine()}")
    say(f"Mode: {'quick' if args.quick else 'full'}")
    started = time.monotonic()
    rows = asyncio.run(run_all(args.only or list(BENCHMARKS), args.quick))
    say("\n" + table(rows))
    say(f"\nTotal: {time.monotonic() - started:.0f} s ({'quick' if args.quick else 'full'} run)")


if __name__ == "__main__":
    main()
