"""`make run`'s stack: a taken port is named, and closing the terminal stops every process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.azurite import ROOT, Azurite, PortInUseError, free_ports
from devtools.launch import start_host, start_simulator


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as when a second `make run` is already going."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_azurite_names_its_port_that_is_in_use(taken_port: int) -> None:
    blob, table = free_ports(2)
    with pytest.raises(PortInUseError) as caught:
        Azurite(blob, taken_port, table).start()
    assert str(caught.value) == f"port {taken_port} is already in use (Azurite's queue port)"


def test_simulator_names_its_port_that_is_in_use(taken_port: int, tmp_path: Path) -> None:
    (tls,) = free_ports(1)
    with pytest.raises(PortInUseError) as caught:
        start_simulator(tmp_path / "graphsim", port=tls, tls_port=taken_port)
    assert str(caught.value) == f"port {taken_port} is already in use (the Graph simulator's HTTPS port)"


def test_local_host_names_its_port_that_is_in_use(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(PortInUseError) as caught:
        start_host({}, tmp_path / "host.log", taken_port)
    assert str(caught.value) == f"port {taken_port} is already in use (the local host's port)"


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_closing_the_terminal_stops_every_process_of_the_stack(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "devtools.stack", "--no-host", "--free-ports", "--run-dir", str(tmp_path)]
    stack = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[int] = set()
    try:
        assert stack.stdout is not None
        lines = []
        for line in stack.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        assert any("not started (--no-host)" in line for line in lines), lines
        children = _descendants(stack.pid)
        assert len(children) >= 2, "Azurite and the simulator should be running"

        stack.send_signal(signal.SIGHUP)
        assert stack.wait(timeout=30) == 0

        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        for pid in children:  # only on failure: never leave the test's servers behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_closing_the_terminal_stops_the_demo_and_every_process_it_started() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    children: set[int] = set()
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.strip().startswith("Graph simulator"):
                break
        children = _descendants(demo.pid)
        assert len(children) >= 3, "Azurite, the simulator and the local host should be running"

        demo.send_signal(signal.SIGHUP)  # before the fix, SIGHUP was not handled: the servers outlived it
        demo.wait(timeout=60)

        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
