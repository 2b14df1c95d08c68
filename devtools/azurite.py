"""Start and stop Azurite, the Azure Storage emulator, for tests, the demo and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# The emulator's well-known public development key (documented by Microsoft, not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class PortInUseError(RuntimeError):
    """A fixed port that a server of the local stack needs is taken by another process."""

    def __init__(self, port: int, role: str) -> None:
        super().__init__(f"port {port} is already in use ({role})")
        self.port = port
        self.role = role


def ensure_free(ports: dict[int, str]) -> None:
    """Raise PortInUseError naming the first of ``ports`` (port -> its role) that is taken.

    Checked before a server starts, so a clash is reported as such rather than as a
    server that exited. SO_REUSEADDR keeps a port in TIME_WAIT from counting as taken,
    as it does for the servers themselves; a listener on any address still does.
    """
    for port, role in ports.items():
        if port == 0:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                raise PortInUseError(port, role) from error


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on loopback that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:  # held open together, so the kernel cannot hand one out twice
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    return free_ports(1)[0]


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on ``port``; raise if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def azurite_binary() -> Path:
    """The Azurite installed by `npm ci` in the project root."""
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make setup` (npm ci) first")
    return path


@dataclass
class Azurite:
    """A running (or stopped) Azurite with fixed ports, so it can be restarted in place."""

    blob_port: int
    queue_port: int
    table_port: int
    location: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        """A full connection string for this instance (the SDKs lack UseDevelopmentStorage)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )

    def start(self) -> Azurite:
        """Start the emulator and wait until its queue and table services listen."""
        ensure_free(
            {
                self.blob_port: "Azurite's blob port",
                self.queue_port: "Azurite's queue port",
                self.table_port: "Azurite's table port",
            }
        )
        command = [
            str(azurite_binary()),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if self.location is None:
            command.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            command += ["--location", str(self.location)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for port in (self.queue_port, self.table_port):
            wait_for_port(port, process=self.process)
        return self

    def stop(self) -> None:
        """Stop the emulator (its data survives only with a ``location``)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_azurite(location: Path | None = None) -> Azurite:
    """Start Azurite on free ports, in memory unless ``location`` is given."""
    blob, queue, table = free_ports(3)
    return Azurite(blob, queue, table, location).start()
