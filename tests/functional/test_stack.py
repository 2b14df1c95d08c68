"""`make run`'s stack: a taken port is named, closing the terminal stops every process, a server
that dies stops the stack, and the next steps it prints work."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools.azurite import ROOT, Azurite, PortInUseError, ensure_free, free_ports
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


# `make run` under a terminal that closes, with a server that dies, and what it tells a newcomer to do next.


def _stack_settings(run_dir: Path, process: subprocess.Popen[Any], within: float = 90) -> dict[str, Any]:
    """The settings file the stack writes once everything runs (read_stack: its Stack block too)."""
    path = run_dir / "local.settings.json"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.is_file():
            return dict(json.loads(path.read_text()))
        assert process.poll() is None, f"the stack exited with {process.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"no {path} after {within} s")


def _ports(settings: dict[str, Any]) -> dict[int, str]:
    """Every port the stack listens on, from its settings."""
    stack, values = settings["Stack"], settings["Values"]
    ports = {int(p): "Azurite" for p in re.findall(r"127\.0\.0\.1:(\d+)", values["AzureWebJobsStorage"])}
    ports[int(urlsplit(stack["controlUrl"]).port or 0)] = "the simulator"
    if "host" in stack["processes"]:
        ports[int(urlsplit(stack["hostUrl"]).port or 0)] = "the local host"
    return ports


def _released(ports: dict[int, str], within: float = 30) -> list[str]:
    """The ports still taken after ``within`` seconds (none, when everything stopped)."""
    deadline = time.monotonic() + within
    while True:
        taken = []
        for port, role in ports.items():
            try:
                ensure_free({port: role})
            except PortInUseError as error:
                taken.append(str(error))
        if not taken or time.monotonic() > deadline:
            return taken
        time.sleep(0.2)


def _kill_all(settings: dict[str, Any] | None) -> None:
    """Only on failure: never leave the test's servers behind."""
    if settings is None:
        return
    for pid in [settings["Stack"]["pid"], *settings["Stack"]["processes"].values()]:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL) if pid != settings["Stack"]["pid"] else os.kill(pid, signal.SIGKILL)


def _controlling_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_closing_the_terminal_of_make_run_stops_every_server(tmp_path: Path) -> None:
    """As `tmux new-session 'make run'` then closing the pane: make leads the terminal's session and
    gets the SIGHUP, which it does not pass on; the stack must notice by itself."""
    makefile = tmp_path / "Makefile"
    run_dir = tmp_path / "run"
    makefile.write_text(f"run:\n\texec {sys.executable} -m devtools.stack --free-ports --run-dir {run_dir}\n")
    master, slave = os.openpty()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(makefile), "run"],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_terminal,  # a session of its own, the pty as its terminal, as a tmux pane's
    )
    os.close(slave)
    screen: list[bytes] = []
    closing = threading.Event()
    reader = threading.Thread(target=_drain, args=(master, screen, closing), daemon=True)
    reader.start()
    settings = None
    try:
        settings = _stack_settings(run_dir, make)
        servers = [settings["Stack"]["pid"], *settings["Stack"]["processes"].values()]
        assert len(servers) == 4, settings["Stack"]  # the stack, Azurite, the simulator and the host

        closing.set()
        reader.join()  # a read in progress would keep the terminal open
        os.close(master)  # the pane closes: the terminal hangs up
        assert _released(_ports(settings)) == []
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in servers if _alive(pid)] == []
        assert not (run_dir / "local.settings.json").exists()
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
        if make.poll() is None:
            make.kill()
        make.wait()
        _kill_all(settings)


def _drain(fd: int, into: list[bytes], closing: threading.Event) -> None:
    """Read a pty until told to stop, so the stack never blocks on a full terminal."""
    with contextlib.suppress(OSError):
        while not closing.is_set():
            if select.select([fd], [], [], 0.1)[0]:
                into.append(os.read(fd, 4096))


def test_make_run_says_so_and_stops_when_azurite_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "devtools.stack", "--no-host", "--free-ports", "--run-dir", str(run_dir)]
    stack = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    settings = None
    try:
        settings = _stack_settings(run_dir, stack)
        azurite, simulator = settings["Stack"]["processes"]["azurite"], settings["Stack"]["processes"]["simulator"]
        os.killpg(azurite, signal.SIGKILL)  # Azurite crashes

        assert stack.wait(timeout=30) == 1
        assert stack.stderr is not None
        said = stack.stderr.read()
        assert f"Azurite (pid {azurite}) exited with status -9: stopping the stack" in said
        assert _released(_ports(settings)) == []
        assert not _alive(simulator)
        assert not (run_dir / "local.settings.json").exists()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        _kill_all(settings)


@pytest.mark.timeout(180)
def test_after_make_run_the_cli_the_simulator_control_and_a_consumer_work(tmp_path: Path) -> None:
    """What `make run` prints to do next works as printed, with no local.settings.json copied by hand."""
    run_dir = tmp_path / ".run"  # the CLI, run in tmp_path, finds .run/local.settings.json as in the repository
    out = tmp_path / "stack.out"
    command = [sys.executable, "-m", "devtools.stack", "--free-ports", "--run-dir", str(run_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")}
    env["PYTHONPATH"] = str(ROOT)
    with out.open("w") as stdout:
        stack = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)
    settings = None
    consumer = None
    try:
        settings = _stack_settings(run_dir, stack)
        deadline = time.monotonic() + 10
        while "Press Ctrl-C" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        banner = out.read_text()
        for step in ("devtools.simctl", "files create demo-drive", "subscriptions list", "events tail"):
            assert step in banner, banner
        assert "devtools.consume" in banner, banner

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            return done

        listed = run("graphhooks.cli", "subscriptions", "list").stdout
        assert "drives/demo-drive/root" in listed and "1 subscription(s)" in listed

        created = run("devtools.simctl", "files", "create", "demo-drive", "report.txt", "--content", "draft").stdout
        item_id = created.strip().rsplit(" ", 1)[1]
        assert created.startswith("created report.txt: item ")

        events = tmp_path / "consumer.out"
        with events.open("w") as sink:
            consumer = subprocess.Popen(
                [sys.executable, "-m", "devtools.consume"],
                cwd=tmp_path,
                env={**env, "AzureWebJobsStorage": settings["Values"]["AzureWebJobsStorage"]},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while item_id not in events.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"created driveItem {item_id} report.txt (event " in events.read_text()
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGINT)
            assert consumer.wait(timeout=30) == 0
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        finally:
            _kill_all(settings)


async def test_waiting_for_subscriptions_reads_entries_delivered_through_event_grid(azurite: Azurite) -> None:
    from devtools.stack import wait_for_subscriptions

    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_SUBSCRIPTIONS": json.dumps([{"resource": "users", "delivery": "eventGrid"}]),
        "EVENT_GRID_AZURE_SUBSCRIPTION_ID": "8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e",
        "EVENT_GRID_RESOURCE_GROUP": "rg-app",
        "EVENT_GRID_PARTNER_TOPIC": "app-topic",
        "EVENT_GRID_LOCATION": "westeurope",
    }
    # Nothing is subscribed here: it waits, then says so, rather than failing on the entry.
    assert await wait_for_subscriptions(env, within=0.2) is False
