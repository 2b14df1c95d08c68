"""Wiring: load the app, start HTTP, queue listeners and timers; stop them gracefully."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from devtools.host.admin import AdminApi
from devtools.host.eventgrid import ROUTE, TRIGGER_TYPE, EventGridWebhook, is_route
from devtools.host.http import (
    HttpDispatcher,
    HttpFunction,
    body_limit,
    http_function,
)
from devtools.host.invoker import Invoker
from devtools.host.listener import LEASE_SECONDS, QueueListener, poison_queue_name
from devtools.host.loader import FunctionSpec, import_app, index_functions
from devtools.host.queues import QueueClients, QueueOutputSink
from devtools.host.settings import HostConfig, load_host_json, resolve_setting_refs
from devtools.host.timers import TimerListener

log = logging.getLogger("devtools.host")


def loop_time() -> float:
    """Monotonic time of the running loop."""
    return asyncio.get_running_loop().time()


@dataclass(frozen=True)
class HostOptions:
    """Command-line options."""

    script_root: Path
    host: str = "127.0.0.1"
    port: int = 7071
    function_key: str | None = None
    shutdown_timeout: float = 30.0
    message_hold_seconds: int = LEASE_SECONDS


class LocalHost:
    """One host process: one event loop for HTTP, pollers, timers and async functions."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.config: HostConfig = load_host_json(options.script_root)
        self.clients = QueueClients()
        self.sink = QueueOutputSink(self.clients, self.config.queues)
        self.invoker = Invoker(self.sink, str(options.script_root.resolve()))
        self.http: list[HttpFunction] = []
        self.queues: list[QueueListener] = []
        self.timers: list[TimerListener] = []
        self.eventgrid: list[FunctionSpec] = []
        self.others: list[FunctionSpec] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.url = ""

    def _index(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            kind = spec.trigger.type.lower()
            try:
                if kind == "httptrigger":
                    self.http.append(http_function(spec))
                elif kind == "queuetrigger":
                    self.queues.append(self._queue_listener(spec))
                elif kind == "timertrigger":
                    self.timers.append(TimerListener(spec, self.invoker))
                elif kind == TRIGGER_TYPE:
                    self.eventgrid.append(spec)
                else:
                    log.warning(
                        "function %s: trigger %s is not supported locally; only the admin API runs it",
                        spec.name,
                        spec.trigger.type,
                    )
                    self.others.append(spec)
            except Exception as exc:  # noqa: BLE001 - the host keeps going without a broken function
                log.error("function %s could not be indexed and is disabled: %s", spec.name, exc)

    def _queue_listener(self, spec: FunctionSpec) -> QueueListener:
        name = resolve_setting_refs(str(spec.trigger.get("queueName")))
        connection = spec.trigger.get("connection")
        queue = self.clients.queue(connection, name)
        poison_name = poison_queue_name(name)
        poison = self.clients.queue(connection, poison_name) if poison_name else None
        listener = QueueListener(
            spec, queue, poison, self.clients, self.invoker, self.config.queues, self.options.message_hold_seconds
        )
        self.sink.watch(name, listener.notify)
        return listener

    async def start(self) -> None:
        """Import the app, listen, and start the triggers."""
        specs = index_functions(import_app(self.options.script_root), self.config.functions)
        self._index(specs)
        everything = {s.name: s for s in specs}
        self.admin = AdminApi(everything, self.invoker, self.options.function_key)
        # Read once the app's settings are loaded, as the host does; bodies over it get 413 unread.
        max_body = body_limit(os.environ)
        self.dispatcher = HttpDispatcher(
            self.http, self.config.route_prefix, self.invoker, self.options.function_key, max_body
        )
        self.webhook = EventGridWebhook(
            {s.name: s for s in self.eventgrid}, self.invoker, self.options.function_key, max_body
        )
        app = web.Application(client_max_size=max_body)
        self.admin.register(app)
        app.router.add_route("*", "/{tail:.*}", self._route)
        # No access log: query strings can carry function keys.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await self._site.start()
        port = self._runner.addresses[0][1] if self._runner.addresses else self.options.port
        self.url = f"http://{self.options.host}:{port}"
        listeners: list[QueueListener | TimerListener] = [*self.queues, *self.timers]
        for listener in listeners:
            self._tasks.append(asyncio.create_task(listener.run(), name=f"trigger:{listener.spec.name}"))
        self._print_banner()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        # The extension's webhook sits outside the route prefix, before any function route.
        if is_route(request.path):
            return await self.webhook.handle(request)
        return await self.dispatcher.handle(request)

    def _print_banner(self) -> None:
        lines = ["", "Functions:", ""]
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        for fn in self.http:
            methods = ",".join(sorted(fn.methods)) if fn.methods else "ALL"
            lines.append(f"        {fn.spec.name}: [{methods}] {self.url}{prefix}/{fn.route.template.strip('/')}")
        for q in self.queues:
            lines.append(f"        {q.spec.name}: queueTrigger ({q.queue_name})")
        for t in self.timers:
            nxt = ", ".join(o.strftime("%Y-%m-%dT%H:%M:%SZ") for o in t.next_occurrences(2))
            lines.append(f"        {t.spec.name}: timerTrigger ({t.schedule.expression}; next {nxt})")
        for e in self.eventgrid:
            lines.append(f"        {e.name}: eventGridTrigger (POST {self.url}{ROUTE}?functionName={e.name})")
        for o in self.others:
            lines.append(f"        {o.name}: {o.trigger.type} (admin API only)")
        lines += ["", f"Host started: {self.url}"]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    async def stop(self) -> bool:
        """Stop taking work, let in-flight invocations finish, then close. True if all finished."""
        timeout = self.options.shutdown_timeout
        log.info("Host shutting down: no new work; waiting up to %.0fs for in-flight invocations", timeout)
        self.admin.state = "Stopping"
        self.dispatcher.accepting = self.webhook.accepting = False
        if self._site is not None:
            await self._site.stop()
        stoppable: list[QueueListener | TimerListener] = [*self.queues, *self.timers]
        for listener in stoppable:
            listener.stop()
        deadline = loop_time() + timeout
        finished = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            finished = not pending
        # HTTP and admin invocations share the same deadline.
        finished = await self.invoker.drain(max(0.1, deadline - loop_time())) and finished
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.clients.close()
        self.invoker.close()
        if finished:
            log.info("Host stopped cleanly")
        else:
            log.warning("Host stopped with invocations still running after %.0fs; they were abandoned", timeout)
        return finished


async def serve(options: HostOptions) -> int:
    """Run the host until SIGINT/SIGTERM; return the exit code."""
    host = LocalHost(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second signal: exiting without waiting")
            os._exit(130)
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await host.start()
    await stop.wait()
    await host.stop()
    # The app's SDK clients live as long as the process, as in the real worker, which is
    # simply ended: their "unclosed session" complaints at loop close are noise, not news.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    return 0
