"""App factory and in-process launcher: ``await start(config)`` returns a running handle."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .auth import TokenIssuer, make_tls_files, server_ssl_context
from .config import SimConfig
from .identity import IdentityRoutes
from .routes import (
    content,
    control_directory,
    control_drives,
    control_eventgrid,
    control_lists,
    control_outlook,
    control_sharepoint,
    control_sim,
    control_teams,
    control_tenants,
    sharepoint,
)
from .routes.graph import graph_entry
from .state import STATE, SimState

log = logging.getLogger("graphsim")


def graph_app(state: SimState) -> web.Application:
    """The plain-HTTP application: Graph under /v1.0 and the control API under /_sim."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE] = state
    controls = (control_drives, control_sim, control_lists, control_directory, control_outlook, control_teams)
    for control in (*controls, control_tenants, control_eventgrid):
        app.router.add_routes(control.routes)
    app.router.add_routes(content.routes)  # pre-authenticated download URLs, outside /v1.0
    app.router.add_route("*", "/v1.0{tail:.*}", graph_entry)
    app.router.add_routes(control_sharepoint.routes)
    sharepoint.install(app, state)  # SharePoint's own REST API on /sites/{site}/_api
    return app


def identity_app(routes: IdentityRoutes) -> web.Application:
    """The HTTPS application for the identity platform stand-in."""
    app = web.Application()
    routes.add_to(app)
    return app


@dataclass
class SimHandle:
    """A running simulator: its URLs, credentials and state; ``await close()`` to stop."""

    config: SimConfig
    state: SimState
    graph_url: str
    control_url: str
    authority: str
    ca_file: str
    # The managed identity endpoint, as App Service gives it (IDENTITY_ENDPOINT, IDENTITY_HEADER).
    identity_endpoint: str = ""
    identity_header: str = ""
    _runners: list[web.AppRunner] = field(default_factory=list)
    _temp_dir: str | None = None

    def info(self) -> dict[str, Any]:
        """The start-up JSON line's content."""
        return {
            "graph_url": self.graph_url,
            "control_url": self.control_url,
            "authority": self.authority,
            "ca_file": self.ca_file,
            "tenant_id": self.config.tenant_id,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "identity_endpoint": self.identity_endpoint,
            "identity_header": self.identity_header,
            "managed_identity_client_id": self.config.managed_identity_client_id,
            "managed_identity_object_id": self.config.managed_identity_object_id,
        }

    async def close(self) -> None:
        """Stop listeners, senders and HTTP clients; remove a temporary state dir."""
        await self.state.deliverer.close()
        if self.state.http is not None:
            await self.state.http.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def _bound_port(site: web.BaseSite) -> int:
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1])


def _prepare_state_dir(config: SimConfig) -> tuple[str | None, Path, Path]:
    """Make the state dir (a temp dir unless configured) and the TLS files in it."""
    temp_dir = None
    if config.state_dir:
        state_dir = Path(config.state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
    else:
        temp_dir = tempfile.mkdtemp(prefix="graphsim-")
        state_dir = Path(temp_dir)
    cert, key = make_tls_files(state_dir)
    return temp_dir, cert, key


async def start(config: SimConfig | None = None) -> SimHandle:
    """Start both listeners and return a handle; ports 0 pick free ports."""
    config = config or SimConfig()
    temp_dir, cert, key = _prepare_state_dir(config)
    issuer = TokenIssuer(config)
    state = SimState(config=config, issuer=issuer)
    identity = IdentityRoutes(config, issuer, state.tenants)

    runners: list[web.AppRunner] = []
    app = graph_app(state)
    identity.managed.add_to(app)  # the managed identity endpoint is plain HTTP, as App Service's
    graph_runner = web.AppRunner(app, access_log=None)
    await graph_runner.setup()
    runners.append(graph_runner)
    graph_site = web.TCPSite(graph_runner, config.host, config.port)
    await graph_site.start()
    port = _bound_port(graph_site)

    tls_runner = web.AppRunner(identity_app(identity), access_log=None)
    await tls_runner.setup()
    runners.append(tls_runner)
    tls_site = web.TCPSite(tls_runner, config.host, config.tls_port, ssl_context=server_ssl_context(cert, key))
    await tls_site.start()
    tls_port = _bound_port(tls_site)

    host = f"[{config.host}]" if ":" in config.host else config.host
    state.graph_url = f"http://{host}:{port}/v1.0"
    identity.authority = identity.managed.authority = f"https://localhost:{tls_port}"
    handle = SimHandle(
        config=config,
        state=state,
        graph_url=state.graph_url,
        control_url=f"http://{host}:{port}/_sim",
        authority=identity.authority,
        ca_file=str(cert),
        identity_endpoint=f"http://{host}:{port}/msi/token",
        identity_header=identity.managed.header,
        _runners=runners,
        _temp_dir=temp_dir,
    )
    log.info("graph on %s, identity on %s", handle.graph_url, handle.authority)
    return handle
