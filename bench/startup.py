"""Start-up: importing function_app in a fresh process, and a fresh host's first handshake."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp

from devtools.azurite import ROOT

from .harness import running_stack
from .report import Row, median, ms, ratio, say

NAME = "startup"
IMPORT_GOAL = 0.5
COLD_LIMIT = 30.0
# Measured inside the child, so interpreter start-up (the same for both) is left out.
_TIMED_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter run from the project root."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


async def first_handshake(runs: int) -> list[float]:
    """Seconds from starting a host process to its first answered validation handshake."""
    found: list[float] = []
    async with running_stack(NAME, with_host=False) as stack, aiohttp.ClientSession() as session:
        url = f"{stack.base_url}/api/notifications?validationToken=cold"
        for _ in range(runs):
            started = time.monotonic()
            # The clock runs from the spawn until the answer Graph would wait for, not just until the port opens.
            await asyncio.to_thread(stack.start_host)
            while time.monotonic() - started < COLD_LIMIT:
                try:
                    async with session.post(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                        if response.status == 200 and await response.text() == "cold":
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.02)
            else:
                raise TimeoutError(f"no handshake answer within {COLD_LIMIT:.0f} s of starting the host")
            found.append(time.monotonic() - started)
            assert stack.host is not None
            await asyncio.to_thread(stack.host.stop)
    return found


async def run(quick: bool) -> list[Row]:
    """Median import times of function_app and of azure.functions alone, then the cold handshake."""
    runs = 5 if quick else 10
    import_seconds("function_app")  # the first run pays for cold .pyc and page caches
    app = [await asyncio.to_thread(import_seconds, "function_app") for _ in range(runs)]
    base = [await asyncio.to_thread(import_seconds, "azure.functions") for _ in range(runs)]
    say(f"  import function_app: median {ms(median(app))}; azure.functions alone: median {ms(median(base))}")
    cold = await first_handshake(2 if quick else 3)
    say(f"  fresh host to first handshake: {', '.join(ms(s) for s in cold)}")
    return [
        Row(NAME, f"import function_app (median of {runs})", ms(median(app)), ms(median(base)),
            ratio(median(app), median(base)), f"< {ms(IMPORT_GOAL)}", median(app) < IMPORT_GOAL),
        Row(NAME, "  of which beyond azure.functions", ms(median(app) - median(base))),
        Row(NAME, f"fresh host -> first handshake (median of {len(cold)})", ms(median(cold)),
            goal="(optional; Graph allows 10 s)"),
    ]  # fmt: skip
