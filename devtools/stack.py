"""Run the whole product locally: Azurite, the Graph simulator and the local host.

`python -m devtools.stack` (`make run`) starts them on the ports that
local.settings.example.json names, so `func start` works against the same
simulator and Azurite too; the demo, the end-to-end tests and the benchmarks
start private stacks on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .azurite import ROOT, Azurite, PortInUseError, free_ports
from .launch import Child, Simulator, start_host, start_simulator

DEMO_DRIVE = "demo-drive"


@dataclass
class LocalStack:
    """Everything the function app needs, running as separate processes."""

    run_dir: Path
    azurite: Azurite
    sim: Simulator
    env: dict[str, str]
    host_port: int
    host: Child | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """The local host's root URL."""
        return f"http://127.0.0.1:{self.host_port}"

    def start_host(self) -> None:
        """Start (or start again) the local host with this stack's settings."""
        self.host, _ = start_host(self.env, self.run_dir / "host.log", self.host_port)

    def run_function(self, name: str) -> None:
        """Run a non-HTTP function once through the host's admin API (202 when accepted)."""
        request = urllib.request.Request(
            f"{self.base_url}/admin/functions/{name}",
            data=json.dumps({"input": ""}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 202:
                raise RuntimeError(f"admin run of {name} answered {response.status}")

    def stop(self) -> None:
        """Stop the host first (it finishes in-flight work), then the simulator and Azurite."""
        if self.host is not None:
            self.host.stop()
        self.sim.stop()
        self.azurite.stop()


def start_stack(
    run_dir: Path,
    *,
    subscriptions: list[dict[str, str]] | None = None,
    sim_options: tuple[str, ...] = (),
    persistent_storage: bool = False,
    fixed_ports: bool = False,
    extra_env: dict[str, str] | None = None,
    with_host: bool = True,
) -> LocalStack:
    """Start Azurite, the simulator and (unless ``with_host`` is False) the local host."""
    run_dir.mkdir(parents=True, exist_ok=True)
    location = run_dir / "azurite" if persistent_storage else None
    if fixed_ports:
        azurite = Azurite(10000, 10001, 10002, location).start()
        sim_ports, host_port = (8800, 8801), 7071
    else:
        blob, queue, table, host_port = free_ports(4)
        azurite = Azurite(blob, queue, table, location).start()
        sim_ports = (0, 0)
    try:
        sim = start_simulator(run_dir / "graphsim", *sim_options, port=sim_ports[0], tls_port=sim_ports[1])
    except BaseException:
        azurite.stop()  # never leave an emulator behind when the simulator cannot start
        raise
    desired = subscriptions if subscriptions is not None else [{"resource": f"drives/{DEMO_DRIVE}/root"}]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "NOTIFICATION_URL": f"http://127.0.0.1:{host_port}/api/notifications",
        "LIFECYCLE_NOTIFICATION_URL": f"http://127.0.0.1:{host_port}/api/lifecycle",
        "GRAPH_SUBSCRIPTIONS": json.dumps(desired),
        **sim.settings(),
        **(extra_env or {}),
    }
    stack = LocalStack(run_dir, azurite, sim, env, host_port)
    try:
        if with_host:
            stack.start_host()
    except BaseException:
        stack.stop()
        raise
    return stack


async def seed_demo_drive(control_url: str) -> dict[str, Any]:
    """Create the drive that local.settings.example.json subscribes to."""
    from .simclient import SimControl

    async with SimControl(control_url) as control:
        return await control.create_drive(DEMO_DRIVE)


def main(argv: list[str] | None = None) -> None:
    """Start the stack on the example settings' ports and keep it running until stopped."""
    parser = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__)
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run", help="logs and state (default .run/)")
    parser.add_argument(
        "--no-host",
        action="store_true",
        help="start Azurite and the simulator only, so `func start` can take port 7071",
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="use free ports instead of the example settings' (for tests; `func start` will not find them)",
    )
    args = parser.parse_args(argv)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Closing the terminal (SIGHUP) must stop the stack as Ctrl-C does: the children run in
    # sessions of their own, so nothing else would stop them. Installed before anything starts.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        stack = start_stack(args.run_dir, fixed_ports=not args.free_ports, with_host=not args.no_host)
    except PortInUseError as error:
        sys.exit(f"cannot start the local stack: {error}")
    try:
        asyncio.run(seed_demo_drive(stack.sim.control_url))
        if args.no_host:
            _say(
                "Local host:      not started (--no-host); run `func start` in another terminal, then\n"
                f"                 curl -X POST {stack.base_url}/admin/functions/renew "
                "-H 'Content-Type: application/json' -d '{}'  to subscribe now"
            )
        else:
            stack.run_function("renew")
            _say(f"Local host:      {stack.base_url}/api/notifications  (logs: {stack.run_dir / 'host.log'})")
        _say(f"Graph simulator: {stack.sim.info['graph_url']}  control: {stack.sim.control_url}")
        _say(f"Azurite:         queue {stack.azurite.queue_port}, table {stack.azurite.table_port}")
        _say("Press Ctrl-C to stop.")
        while not stopping:
            time.sleep(0.2)
    finally:
        stack.stop()
        _say("stopped", sys.stderr)


def _say(line: str, stream: TextIO | None = None) -> None:
    """Print a line; a closed terminal (after SIGHUP) must not stop the clean-up."""
    with contextlib.suppress(OSError):
        print(line, file=stream or sys.stdout, flush=True)


if __name__ == "__main__":
    main()
