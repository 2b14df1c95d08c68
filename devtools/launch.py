"""Start the Graph simulator and the local host as child processes, and stop them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .azurite import ROOT, ensure_free, free_port, wait_for_port


@dataclass
class Child:
    """A child process started in its own session, so its whole tree can be signalled."""

    command: list[str]
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    def spawn(self, stdout: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start the command; stderr goes to ``log_path`` when one is given."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=stdout if stdout is not None else self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
            start_new_session=True,
        )
        return self.process

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int | None:
        """Signal the process (Ctrl-C by default) and wait; kill it if it does not exit."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def kill(self) -> None:
        """Kill the process at once, as a crash would."""
        self.stop(signal.SIGKILL, timeout=10)


@dataclass
class Simulator(Child):
    """The Graph simulator; ``info`` is the JSON line it prints on start-up."""

    info: dict[str, Any] = field(default_factory=dict)

    @property
    def control_url(self) -> str:
        """The base URL of the simulator's control API."""
        return str(self.info["control_url"])

    def settings(self) -> dict[str, str]:
        """The app settings that point the function app at this simulator."""
        return {
            "GRAPH_BASE_URL": str(self.info["graph_url"]),
            "AZURE_AUTHORITY_HOST": str(self.info["authority"]),
            "AZURE_AUTHORITY_CA_FILE": str(self.info["ca_file"]),
            "GRAPH_TENANT_ID": str(self.info["tenant_id"]),
            "GRAPH_CLIENT_ID": str(self.info["client_id"]),
            "GRAPH_CLIENT_SECRET": str(self.info["client_secret"]),
        }


def start_simulator(state_dir: Path, *options: str, port: int = 0, tls_port: int = 0) -> Simulator:
    """Start ``python -m devtools.graphsim`` and wait for its start-up line."""
    ensure_free({port: "the Graph simulator's HTTP port", tls_port: "the Graph simulator's HTTPS port"})
    command = [sys.executable, "-m", "devtools.graphsim", "--port", str(port), "--tls-port", str(tls_port)]
    command += ["--state-dir", str(state_dir), *options]
    sim = Simulator(command, dict(os.environ), state_dir / "graphsim.log")
    process = sim.spawn(stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        sim.stop()
        raise RuntimeError(f"the simulator exited before starting; see {sim.log_path}")
    sim.info = json.loads(line)
    return sim


def terminate(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM a process started without a session of its own; kill it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def start_host(
    env: dict[str, str], log_path: Path, port: int | None = None, without: tuple[str, ...] = ()
) -> tuple[Child, int]:
    """Start ``python -m devtools.host`` on ``port`` (a free one by default) and wait for it.

    The host sees this process's environment with ``env`` on top, less the names in ``without``.
    """
    if port:
        ensure_free({port: "the local host's port"})
    port = port or free_port()
    command = [sys.executable, "-m", "devtools.host", "--port", str(port)]
    environ = {name: value for name, value in {**os.environ, **env}.items() if name not in without}
    host = Child(command, environ, log_path)
    process = host.spawn()
    wait_for_port(port, timeout=30, process=process)
    return host, port
