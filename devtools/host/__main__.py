"""`python -m devtools.host`: run a v2 Python function app locally, like `func start`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from devtools.host.invoker import invocation_id_var
from devtools.host.listener import LEASE_SECONDS
from devtools.host.runtime import HostOptions, serve
from devtools.host.settings import HostConfigError, load_local_settings, local_http_port

HOLD_ENV = "LOCALHOST_MESSAGE_HOLD_SECONDS"
KEY_ENV = "LOCALHOST_FUNCTION_KEY"


class _InvocationFilter(logging.Filter):
    """Adds the current invocation id to every record (user logs included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.invocation_id = invocation_id_var.get()
        return True


def configure_logging(level: str) -> None:
    """Everything to stderr; stdout carries only the start-up banner."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_InvocationFilter())
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s [%(invocation_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The storage SDK logs every HTTP request at INFO, with headers; keep it quiet.
    logging.getLogger("azure").setLevel(logging.WARNING)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="python -m devtools.host", description=__doc__)
    parser.add_argument(
        "--script-root", default=".", help="folder with function_app.py, host.json, local.settings.json"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="HTTP port (default: Host.LocalHttpPort of local.settings.json, else 7071; 0 picks one)",
    )
    parser.add_argument(
        "--enforce-keys",
        metavar="KEY",
        default=None,
        help="require KEY (?code= or x-functions-key) for function/admin-level routes and "
        "the admin API; default: not enforced, as func start. "
        "Env FUNCTIONS_HOST_KEY, or the app setting LOCALHOST_FUNCTION_KEY, sets it too",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for in-flight invocations on SIGINT/SIGTERM (default 30)",
    )
    parser.add_argument(
        "--message-hold-seconds",
        type=int,
        default=_env_int(HOLD_ENV, LEASE_SECONDS),
        help="how long a running queue message stays invisible, renewed at half of it "
        f"(default {LEASE_SECONDS}, as the real host; env {HOLD_ENV}); tests shorten it to see "
        "a message come back soon after a crash",
    )
    parser.add_argument("--log-level", default="INFO", help="root log level (default INFO)")
    args = parser.parse_args(argv)
    if args.message_hold_seconds < 1:
        parser.error("--message-hold-seconds must be at least 1")
    return args


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number of seconds, not {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Load settings into the environment, then serve until a signal."""
    args = parse_args(argv)
    configure_logging(args.log_level.upper())
    root = Path(args.script_root).resolve()
    try:
        source = load_local_settings(root, os.environ)
    except HostConfigError as exc:
        logging.getLogger("devtools.host").error("%s", exc)
        return 2
    if source:
        logging.getLogger("devtools.host").info("settings from %s (environment variables win)", source.name)
    port = args.port if args.port is not None else (local_http_port(root) or 7071)
    # LOCALHOST_FUNCTION_KEY can come from local.settings.json, loaded into the environment above.
    key = args.enforce_keys or os.environ.get("FUNCTIONS_HOST_KEY") or os.environ.get(KEY_ENV) or None
    options = HostOptions(
        script_root=root,
        host=args.host,
        port=port,
        function_key=key,
        shutdown_timeout=args.shutdown_timeout,
        message_hold_seconds=args.message_hold_seconds,
    )
    try:
        return asyncio.run(serve(options))
    except HostConfigError as exc:
        logging.getLogger("devtools.host").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
