"""A worker's resident memory after one renew tick, measured in a fresh process of its own.

``python -m bench.tenant_memory`` reads the app's settings from its environment, builds the
worker the queue and timer triggers use, reads VmRSS, runs one tick (``worker.renew``: with
TENANT_MODE=multi every tenant's Graph client, sources and reconciler are built, its token
fetched and its subscriptions reconciled), collects garbage, reads VmRSS again, then once
more after a second tick (the higher of the two counts), and prints one JSON line. A fresh
process, so the figure is the worker's, not a benchmark's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .memory import rss_bytes


async def measure() -> dict[str, Any]:
    """Build, tick, measure."""
    from shared.app.worker import build_worker
    from shared.clock import utcnow

    worker = await build_worker(os.environ)
    try:
        gc.collect()
        built = rss_bytes(os.getpid())
        started = time.monotonic()
        await worker.renew(utcnow())
        tick = time.monotonic() - started
        gc.collect()
        after = rss_bytes(os.getpid())
        # A second tick: what every renew tick costs once nothing is left to create.
        started = time.monotonic()
        await worker.renew(utcnow())
        again = time.monotonic() - started
        gc.collect()
        after = max(after, rss_bytes(os.getpid()))
        # The synchronizer's sources are the TenantGraphs in multi mode: how many tenants' objects are live.
        sources = worker.processor._sync._sources
        live = len(getattr(sources, "_graphs", {}))
        peak = rss_bytes(os.getpid(), "VmHWM")
        times = {"tick": tick, "again": again}
        return {"built": built, "after": after, "peak": peak, **times, "live": live, "tls": open_tls()}
    finally:
        await worker.close()


def trust_store(env: dict[str, str], run_dir: Path) -> dict[str, str]:
    """``env`` trusting the simulator's CA through the system trust store (SSL_CERT_FILE), as production trusts
    login.microsoftonline.com, instead of AZURE_AUTHORITY_CA_FILE.

    With AZURE_AUTHORITY_CA_FILE, azure-core builds a new SSLContext for every token request, so aiohttp's
    pool (keyed by SSL context) never reuses a connection: each token request leaves a TLS connection open.
    """
    bundle = run_dir / "trust-bundle.pem"
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    bundle.write_text(system.read_text() + "\n" + Path(env["AZURE_AUTHORITY_CA_FILE"]).read_text())
    out = {k: v for k, v in env.items() if k != "AZURE_AUTHORITY_CA_FILE"}
    return out | {"SSL_CERT_FILE": str(bundle)}


def open_tls() -> int:
    """asyncio TLS connections alive in this process (each holds a 256 KiB read buffer and OpenSSL's state)."""
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "SSLProtocol")


def run_in_process(env: dict[str, str], limit: float = 900.0) -> dict[str, Any]:
    """Run the measurement in a fresh interpreter with ``env`` as the app's settings; its JSON answer."""
    base = {k: v for k, v in os.environ.items() if k not in ("AZURE_AUTHORITY_CA_FILE", "SSL_CERT_FILE")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.tenant_memory"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.tenant_memory failed ({done.returncode}): {done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    """Print the measurement as one JSON line."""
    warnings.filterwarnings("ignore", "This class is deprecated", DeprecationWarning)
    print(json.dumps(asyncio.run(measure())), flush=True)


if __name__ == "__main__":
    main()
