"""Run the whole product locally: Azurite, the Graph simulator and the local host.

`python -m devtools.stack` (`make run`) starts them on the ports that
local.settings.example.json names, so `func start` works against the same
simulator and Azurite too; the demo, the end-to-end tests and the benchmarks
start private stacks on free ports. While it runs, `<run dir>/local.settings.json`
holds its settings for `graphhooks` and `devtools.simctl`; if one of its servers
dies, it says which, stops the others and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from graphhooks import localstack

from .azurite import ROOT, Azurite, PortInUseError, free_ports
from .host.settings import load_local_settings
from .launch import Child, Simulator, start_host, start_simulator
from .watch import Watch

DEMO_DRIVE = "demo-drive"
SERVERS = {"azurite": "Azurite", "simulator": "the Graph simulator", "host": "the local host"}
DEVELOPMENT_QUEUE_PORT = 10001  # UseDevelopmentStorage=true's queue port: devtools.consume's default


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

    @property
    def settings_path(self) -> Path:
        """Where the stack's settings are written for the CLI while it runs."""
        return self.run_dir / localstack.FILE_NAME

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Each running server's process: azurite, simulator and (when started) host."""
        found = {"azurite": self.azurite.process, "simulator": self.sim.process}
        if self.host is not None:
            found["host"] = self.host.process
        return {name: process for name, process in found.items() if process is not None}

    def dead(self) -> str | None:
        """The first server that exited, with its pid and status; None while all run."""
        for name, process in self.processes().items():
            if process.poll() is not None:
                return f"{SERVERS[name]} (pid {process.pid}) exited with status {process.returncode}"
        return None

    def write_settings(self) -> None:
        """Write the host's settings and the stack's pids and URLs for `graphhooks` and `devtools.simctl`."""
        values: dict[str, str] = dict(self.env)
        load_local_settings(ROOT, values)  # the example's other Values, as the host reads them
        stack = {
            "pid": os.getpid(),
            "hostUrl": self.base_url,
            "graphUrl": self.sim.info["graph_url"],
            "controlUrl": self.sim.control_url,
            "processes": {name: process.pid for name, process in self.processes().items()},
        }
        localstack.write(self.settings_path, values, stack)

    def stop(self) -> None:
        """Stop the host first (it finishes in-flight work), then the simulator and Azurite."""
        with contextlib.suppress(FileNotFoundError):
            self.settings_path.unlink()
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


async def wait_for_subscriptions(env: dict[str, str], within: float = 60.0) -> bool:
    """Whether every GRAPH_SUBSCRIPTIONS entry has an active record within ``within`` seconds.

    The host's admin API answers 202 and runs ``renew`` in the background: the next steps are
    printed once its subscription exists, so the first `graphhooks subscriptions list` shows it.
    """
    from azure.core.exceptions import ResourceNotFoundError

    from shared.config.storage import storage_connection
    from shared.config.subscriptions import parse_desired
    from shared.config.tenants import tenant_mode
    from shared.model.names import SUBSCRIPTIONS_TABLE
    from shared.model.subscription import ACTIVE
    from shared.model.tenant import MULTI
    from shared.stores.clients import table_client
    from shared.stores.subscriptions import SubscriptionStore

    values: dict[str, str] = dict(env)
    load_local_settings(ROOT, values)
    multi = tenant_mode(values) == MULTI
    wanted = len(parse_desired(values.get("GRAPH_SUBSCRIPTIONS") or "[]", multi=multi, environ=values))
    deadline = time.monotonic() + within
    async with table_client(storage_connection(values), SUBSCRIPTIONS_TABLE) as client:
        store = SubscriptionStore(client)
        while time.monotonic() < deadline:
            try:
                active = [r for r in await store.list() if r.status == ACTIVE and r.subscription_id]
            except ResourceNotFoundError:
                active = []  # the first renew has not created the table yet
            if len(active) >= wanted:
                return True
            await asyncio.sleep(0.2)
    return False


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
    watch = Watch(lambda: None)
    # Ctrl-C, `kill` and SIGHUP stop the stack: the children run in sessions of their own,
    # so nothing else would stop them. Installed before anything starts.
    watch.catch_signals()
    try:
        stack = start_stack(args.run_dir, fixed_ports=not args.free_ports, with_host=not args.no_host)
    except PortInUseError as error:
        sys.exit(f"cannot start the local stack: {error}")
    died: str | None = None
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
            if not asyncio.run(wait_for_subscriptions(stack.env)):
                _say(f"renew has not created the subscriptions yet: see {stack.run_dir / 'host.log'}")
            _say(f"Local host:      {stack.base_url}/api/notifications  (logs: {stack.run_dir / 'host.log'})")
        _say(f"Graph simulator: {stack.sim.info['graph_url']}  control: {stack.sim.control_url}")
        _say(f"Azurite:         queue {stack.azurite.queue_port}, table {stack.azurite.table_port}")
        stack.write_settings()
        _say(next_steps(stack))
        _say("Press Ctrl-C to stop.")
        watch.dead = stack.dead
        died = watch.wait()
    finally:
        if died is not None:
            _say(f"{died}: stopping the stack (see the logs in {stack.run_dir})", sys.stderr)
        stack.stop()
        _say("stopped", sys.stderr)
    if died is not None:
        sys.exit(1)


def next_steps(stack: LocalStack) -> str:
    """What to try once the stack runs: change a file, list subscriptions, read events."""
    here = Path.cwd() / localstack.RUN_DIR
    found = stack.run_dir.resolve() == here.resolve()
    cli = ".venv/bin/graphhooks" if found else f".venv/bin/graphhooks --settings {stack.settings_path}"
    sim = ".venv/bin/python -m devtools.simctl" + ("" if found else f" --control-url {stack.sim.control_url}")
    consume = ".venv/bin/python -m devtools.consume"
    if stack.azurite.queue_port != DEVELOPMENT_QUEUE_PORT:
        consume = f"AzureWebJobsStorage='{stack.azurite.connection_string}' {consume}"
    steps = [
        (f"Change a file (Graph notifies the host; `{sim} --help` lists the rest):", f"{sim} files create "
         f"{DEMO_DRIVE} report.txt --content draft"),
        ("The subscription `renew` created:", f"{cli} subscriptions list"),
        ("Change events as they arrive (Ctrl-C to stop):", f"{cli} events tail"),
        ("A consumer of graph-changes (its code: devtools/consume.py):", consume),
    ]  # fmt: skip
    lines = [line for why, command in steps for line in (f"  {why}", f"    {command}")]
    return "\n".join(
        [
            "",
            "Next, in another terminal in this directory:",
            *lines,
            f"Settings for the CLI: {stack.settings_path} (deleted when the stack stops).",
            "",
        ]
    )


def _say(line: str, stream: TextIO | None = None) -> None:
    """Print a line; a closed terminal (after SIGHUP) must not stop the clean-up."""
    with contextlib.suppress(OSError):
        print(line, file=stream or sys.stdout, flush=True)


if __name__ == "__main__":
    main()
