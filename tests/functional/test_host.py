"""The local host (devtools/host) run as a subprocess against Azurite, with tests/functional/hostapp.

Each test starts its own host with its own queue names; Azurite is shared by the session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devtools.azurite import Azurite, free_port
from devtools.launch import terminate

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "functional" / "hostapp"

pytestmark = [pytest.mark.timeout(90)]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def queue(azurite: Azurite, name: str) -> QueueClient:
    """A (sync) client for queue ``name``, created if missing; no message encoding."""
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


@dataclass
class Host:
    proc: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path
    queues: dict[str, str]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def request(
        self, path: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()


@pytest.fixture
def start_host(azurite: Azurite, tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """Factory: start the host on the sample app with fresh queue names; stopped afterwards."""
    started: list[Host] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None) -> Host:
        prefix = f"t{uuid.uuid4().hex[:10]}"
        queues = {k: f"{prefix}-{k[2:].lower()}" for k in ("Q_IN", "Q_OUT", "Q_FAIL", "Q_SLOW", "Q_RECORD")}
        queue(azurite, queues["Q_RECORD"])  # the sample app writes records there from its first run
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if k != "FUNCTIONS_HOST_KEY"}
        full_env.update(queues)
        full_env["AzureWebJobsStorage"] = azurite.connection_string
        full_env.update(env or {})
        n = len(started)
        out, err = tmp_path / f"host{n}.out", tmp_path / f"host{n}.err"
        with out.open("wb") as fout, err.open("wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.host", "--port", str(port), "--script-root", str(APP), *(args or [])],
                cwd=ROOT,
                env=full_env,
                stdout=fout,
                stderr=ferr,
            )
        host = Host(proc, f"http://127.0.0.1:{port}", out, err, queues)
        started.append(host)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"host exited with {proc.returncode}:\n{host.log()}")
            return f"Host started: {host.url}" in out.read_text(errors="replace")

        wait_until(ready, 30, "the host's start-up line")
        return host

    yield start
    for host in started:
        terminate(host.proc)


@dataclass
class Records:
    """Reads the JSON records the sample app writes, keeping all of them."""

    client: QueueClient
    events: list[dict[str, Any]] = field(default_factory=list)

    def poll(self) -> list[dict[str, Any]]:
        for msg in self.client.receive_messages(max_messages=32, visibility_timeout=30):
            self.events.append(json.loads(msg.content))
            self.client.delete_message(msg)
        return self.events

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.poll() if e["event"] == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.of(event)) >= count, timeout, f"{count} {event!r} record(s)")
        return self.of(event)


def send_b64(client: QueueClient, text: str) -> None:
    client.send_message(base64.b64encode(text.encode()).decode())


def receive_texts(client: QueueClient, count: int, timeout: float = 15, b64: bool = True) -> list[str]:
    got: list[str] = []

    def enough() -> bool:
        for msg in client.receive_messages(max_messages=32, visibility_timeout=30):
            got.append(base64.b64decode(msg.content).decode() if b64 else msg.content)
            client.delete_message(msg)
        return len(got) >= count

    wait_until(enough, timeout, f"{count} message(s) on {client.queue_name}")
    return got


def test_http_route_params_and_query_decoding(start_host: Callable[..., Host]) -> None:
    host = start_host()
    status, headers, body = host.request(
        "/api/items/42/caf%C3%A9?q=a+b&plus=%2B&sp=%20x&u=%C3%A9t%C3%A9&multi=1&Multi=2&empty=",
        headers={"X-Test": "yes"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Served-By"] == "hostapp"
    data = json.loads(body)
    assert data["route"] == {"id": "42", "name": "café"}
    assert data["params"] == {"q": "a b", "plus": "+", "sp": " x", "u": "été", "multi": "1,2"}
    assert data["header"] == "yes"

    status, _, body = host.request("/api/items/7", method="POST", body=b"x" * 1000)
    assert status == 200
    assert json.loads(body)["route"] == {"id": "7"}
    assert json.loads(body)["body_length"] == 1000


def test_http_wrong_method_or_constraint_is_404(start_host: Callable[..., Host]) -> None:
    host = start_host()
    assert host.request("/api/items/1", method="DELETE")[0] == 404
    assert host.request("/api/items/abc")[0] == 404
    assert host.request("/api/nothing-here")[0] == 404


def test_http_unhandled_exception_is_500_and_logged(start_host: Callable[..., Host]) -> None:
    host = start_host()
    assert host.request("/api/boom")[0] == 500
    wait_until(lambda: "RuntimeError: boom" in host.log(), 5, "the traceback in the log")
    assert "Executed 'Functions.boom' (Failed" in host.log()


def test_function_key_enforced_when_configured(start_host: Callable[..., Host]) -> None:
    open_host = start_host()
    assert open_host.request("/api/secret")[0] == 200  # like func start: keys not enforced

    host = start_host(args=["--enforce-keys", "sekrit"])
    assert host.request("/api/secret")[0] == 401
    assert host.request("/api/secret?code=wrong")[0] == 401
    assert host.request("/api/secret?code=sekrit")[0] == 200
    assert host.request("/api/secret", headers={"x-functions-key": "sekrit"})[0] == 200
    assert host.request("/api/items/1")[0] == 200  # anonymous
    assert host.request("/admin/functions/manual", method="POST", body=b"{}")[0] == 401


def test_queue_message_processed_and_output_written(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host()
    inbox, outbox = queue(azurite, host.queues["Q_IN"]), queue(azurite, host.queues["Q_OUT"])
    for word in ("alpha", "beta", "gamma"):
        send_b64(inbox, word)
    assert sorted(receive_texts(outbox, 3)) == ["ALPHA", "BETA", "GAMMA"]
    wait_until(lambda: not list(inbox.peek_messages()), 10, "the input queue to empty")
    assert host.log().count("Executed 'Functions.relay' (Succeeded") == 3


def test_failing_message_retried_then_moved_to_poison(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host()
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    failing = queue(azurite, host.queues["Q_FAIL"])
    send_b64(failing, "payload")
    poison = queue(azurite, host.queues["Q_FAIL"] + "-poison")
    assert receive_texts(poison, 1, timeout=20) == ["payload"]  # same content, still base64
    attempts = records.wait_for("attempt", 2)
    assert [a["dequeue_count"] for a in attempts] == [1, 2]  # maxDequeueCount 2 in host.json
    time.sleep(1.5)
    assert len(records.of("attempt")) == 2
    assert not list(failing.peek_messages())


def test_non_base64_message_goes_straight_to_poison(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host()
    inbox = queue(azurite, host.queues["Q_IN"])
    inbox.send_message("not base64 at all!")
    poison = queue(azurite, host.queues["Q_IN"] + "-poison")
    assert receive_texts(poison, 1, b64=False) == ["not base64 at all!"]
    assert "Functions.relay" not in host.log()
    assert not list(queue(azurite, host.queues["Q_OUT"]).peek_messages())


def test_timer_runs_on_startup_once(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host()  # TICK_SCHEDULE from local.settings.example.json: once a year
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    ticks = records.wait_for("tick", 1)
    assert ticks[0]["past_due"] is False
    time.sleep(2)
    assert len(records.of("tick")) == 1


def test_timer_schedule_from_app_setting(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host(env={"TICK_SCHEDULE": "*/1 * * * * *"})  # the environment beats local settings
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    ticks = records.wait_for("tick", 4, timeout=10)  # run_on_startup plus one a second
    assert all(t["past_due"] is False for t in ticks)


def test_admin_runs_timer_and_queue_functions(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host()
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    status, _, body = host.request("/admin/host/status")
    assert (status, json.loads(body)) == (200, {"state": "Running"})

    headers = {"Content-Type": "application/json"}
    assert host.request("/admin/functions/manual", "POST", b"{}", headers)[0] == 202
    assert records.wait_for("manual")[0]["past_due"] is False

    assert host.request("/admin/functions/relay", "POST", json.dumps({"input": "hello"}).encode(), headers)[0] == 202
    assert receive_texts(queue(azurite, host.queues["Q_OUT"]), 1) == ["HELLO"]

    assert host.request("/admin/functions/missing", "POST", b"{}", headers)[0] == 404


def test_sigint_waits_for_in_flight_invocation(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host(env={"SLOW_SECONDS": "2"})
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    slow = queue(azurite, host.queues["Q_SLOW"])
    send_b64(slow, "first")
    records.wait_for("started")
    host.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "Host shutting down" in host.log(), 5, "the shutdown log line")
    send_b64(slow, "second")  # arrives after shutdown began: must not start

    assert host.proc.wait(20) == 0
    assert [r["body"] for r in records.of("finished")] == ["first"]
    left = [base64.b64decode(m.content).decode() for m in slow.peek_messages(max_messages=32)]
    assert left == ["second"]
    assert "Host stopped cleanly" in host.log()


def test_shutdown_gives_up_after_the_timeout(start_host: Callable[..., Host], azurite: Azurite) -> None:
    host = start_host(env={"SLOW_SECONDS": "30"}, args=["--shutdown-timeout", "1"])
    records = Records(queue(azurite, host.queues["Q_RECORD"]))
    send_b64(queue(azurite, host.queues["Q_SLOW"]), "long")
    records.wait_for("started")
    started = time.monotonic()
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert "abandoned" in host.log()
    assert not records.of("finished")


def send_until_answered(host: Host, head: bytes, part: bytes, parts: int) -> tuple[bytes, int]:
    """Send ``head``, then up to ``parts`` of ``part`` while no answer has come; the answer and the parts sent."""
    import select
    import socket

    target = host.url.removeprefix("http://").split(":")
    with socket.create_connection((target[0], int(target[1])), timeout=10) as conn:
        conn.sendall(head)
        sent = 0
        while sent < parts and not select.select([conn], [], [], 0)[0]:
            try:
                conn.sendall(part)
            except OSError:
                break  # the host closed the connection after answering
            sent += 1
            time.sleep(0.005)  # paced: a host that answers at once has answered within a few parts
        return conn.recv(4096), sent


def test_a_body_over_the_size_limit_setting_is_refused_before_it_is_sent(start_host: Callable[..., Host]) -> None:
    # FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, as the Functions host reads it (default 100 MB).
    host = start_host(env={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "4096"})
    assert host.request("/api/items/7", method="POST", body=b"x" * 4096)[0] == 200
    assert host.request("/api/items/7", method="POST", body=b"x" * 4097)[0] == 413

    total, part = 40 * 1024 * 1024, b" " * (64 * 1024)
    declared = f"POST /api/items/7 HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode()
    answer, sent = send_until_answered(host, declared, part, total // len(part))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert sent * len(part) < 1024 * 1024  # refused on the header, unread

    chunked = b"POST /api/items/7 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = send_until_answered(host, chunked, f"{len(part):x}\r\n".encode() + part + b"\r\n", 640)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert sent * len(part) < 8 * 1024 * 1024
    assert host.log().count("Executed 'Functions.items'") == 1  # the others were refused before any invocation


def test_a_size_limit_setting_that_is_not_a_number_stops_the_host(azurite: Azurite, tmp_path: Path) -> None:
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1MB"}
    done = subprocess.run(
        [sys.executable, "-m", "devtools.host", "--port", str(free_port()), "--script-root", str(APP)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT must be a positive number of bytes" in done.stderr
