"""Helpers of the Event Grid tests: a recording receiver, Graph calls to the simulator, a local host on a tmp app."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from devtools.azurite import free_port
from devtools.graphsim.server import SimHandle
from devtools.launch import terminate

ROOT = Path(__file__).resolve().parents[2]
AZURE_SUB = "8a8a8a8a-4b4b-4c4c-4d4d-12e12e12e12e"


def eventgrid_url(topic: str = "graphhooks", group: str = "rg-graph", location: str = "westeurope") -> str:
    """An ``EventGrid:`` notification URL, as Graph's and Event Grid's docs write it."""
    return f"EventGrid:?azuresubscriptionid={AZURE_SUB}&resourcegroup={group}&partnertopic={topic}&location={location}"


@dataclass
class Delivery:
    """One request the receiver got."""

    at: float
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """An HTTP endpoint that records every request and answers the scripted statuses (then ``default``)."""

    statuses: list[int] = field(default_factory=list)
    default: int = 202
    got: list[Delivery] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.got.append(Delivery(time.monotonic(), dict(request.headers), json.loads(raw) if raw else None))
        return web.Response(status=self.statuses.pop(0) if self.statuses else self.default)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/events"
        return self

    async def wait_for(self, count: int, within: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + within
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} deliveries after {within}s"
            await asyncio.sleep(0.01)
        return self.got

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def graph_token(sim: SimHandle, tenant: str | None = None) -> str:
    """An app token for ``tenant`` (default: the home tenant) from the simulator's identity stand-in."""
    context = ssl.create_default_context(cafile=sim.ca_file)
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.config.client_id,
        "client_secret": sim.config.client_secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    url = f"{sim.authority}/{tenant or sim.config.tenant_id}/oauth2/v2.0/token"
    async with aiohttp.ClientSession() as s, s.post(url, data=form, ssl=context) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


async def graph(sim: SimHandle, method: str, path: str, body: Any = None, tenant: str | None = None) -> tuple[int, Any]:
    """Call the simulated Graph as the app in ``tenant``: (status, JSON body or None)."""
    headers = {"Authorization": f"Bearer {await graph_token(sim, tenant)}"}
    async with aiohttp.ClientSession() as s, s.request(method, sim.graph_url + path, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


async def control(sim: SimHandle, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    """Call the simulator's control API (``path`` as /_sim/...), expecting ``status``."""
    url = sim.control_url.removesuffix("/_sim") + path
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def subscribe(
    sim: SimHandle, resource: str, change_type: str, url: str, tenant: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Create a subscription (201 expected) expiring in an hour, in ``tenant`` (default: the home tenant)."""
    expiry = (datetime.now(UTC) + timedelta(minutes=60)).isoformat()
    body = {"changeType": change_type, "notificationUrl": url, "resource": resource, "expirationDateTime": expiry}
    status, sub = await graph(sim, "POST", "/subscriptions", body | fields, tenant)
    assert status == 201, sub
    return dict(sub)


@dataclass
class LocalHost:
    """`python -m devtools.host` on a script root, as a subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def webhook(self, function: str) -> str:
        return f"{self.url}/runtime/webhooks/eventgrid?functionName={function}"


def start_host(script_root: Path, logs: Path, args: list[str] | None = None) -> LocalHost:
    """Start the local host on ``script_root`` and wait for its start-up line."""
    port = free_port()
    out, err = logs / f"host-{port}.out", logs / f"host-{port}.err"
    env = {k: v for k, v in os.environ.items() if k not in ("FUNCTIONS_HOST_KEY", "LOCALHOST_FUNCTION_KEY")}
    with out.open("wb") as fout, err.open("wb") as ferr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.host",
                "--port",
                str(port),
                "--script-root",
                str(script_root),
                *(args or []),
            ],
            cwd=ROOT,
            env=env,
            stdout=fout,
            stderr=ferr,
        )
    host = LocalHost(proc, f"http://127.0.0.1:{port}", err)
    deadline = time.monotonic() + 30
    while f"Host started: {host.url}" not in out.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"host exited with {proc.returncode}:\n{host.log()}")
        assert time.monotonic() < deadline, f"no start-up line:\n{host.log()}"
        time.sleep(0.05)
    return host


def stop_host(host: LocalHost) -> None:
    """SIGTERM, then kill if it lingers."""
    terminate(host.proc)


# A throwaway v2 app: one Event Grid function that appends what it got to EG_RECORD (a JSONL
# file) and fails while the file EG_FAIL holds a number above zero, counting it down.
RECORDING_APP = """
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


def _fail_once() -> bool:
    path = os.environ.get("EG_FAIL", "")
    if not path or not os.path.exists(path):
        return False
    left = int(open(path).read() or 0)
    if left <= 0:
        return False
    open(path, "w").write(str(left - 1))
    return True


@app.event_grid_trigger(arg_name="event")
def record(event: func.EventGridEvent) -> None:
    got = {"class": type(event).__name__, "id": event.id, "data": event.get_json(), "at": time.time()}
    if isinstance(event, func.CloudEvent):
        got |= {"type": event.type, "source": event.source, "subject": event.subject, "spec": event.specversion}
    else:
        got |= {"type": event.event_type, "subject": event.subject, "topic": event.topic}
    failing = _fail_once()
    with open(os.environ["EG_RECORD"], "a") as out:
        out.write(json.dumps(got | {"failed": failing}) + "\\n")
    if failing:
        raise RuntimeError("told to fail")
"""


def write_app(root: Path, record: Path, fail: Path | None = None) -> Path:
    """The recording app in ``root`` with its host.json and settings; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "function_app.py").write_text(RECORDING_APP)
    (root / "host.json").write_text(json.dumps({"version": "2.0"}))
    values = {"EG_RECORD": str(record), "EG_FAIL": str(fail or "")}
    (root / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return root


def records(path: Path) -> list[dict[str, Any]]:
    """What the recording app wrote so far."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_records(path: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(records(path)) < count:
        assert time.monotonic() < deadline, f"{len(records(path))} of {count} records after {timeout}s"
        time.sleep(0.02)
    return records(path)
