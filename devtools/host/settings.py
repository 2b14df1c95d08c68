"""App settings (local.settings.json) and host.json, read the way the Functions host reads them."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger("devtools.host")

DEV_ACCOUNT = "devstoreaccount1"
# The emulator's well-known, public development key (documented by Microsoft; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;"
    f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{DEV_ACCOUNT};"
)

_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<frac>\d{1,7}))?)?$"
)
_SETTING_REF = re.compile(r"%([^%]+)%")


class HostConfigError(ValueError):
    """host.json or local.settings.json cannot be used."""


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan string such as "00:00:02", "00:00:00.500" or "1.02:00:00"."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise HostConfigError(f"not a TimeSpan (expected [d.]hh:mm[:ss[.fffffff]]): {text!r}")
    frac = match.group("frac") or "0"
    # .NET reads the fraction as ticks of 100 ns, padded on the right.
    micros = int(frac.ljust(7, "0")) // 10
    return timedelta(
        days=int(match.group("days") or 0),
        hours=int(match.group("h")),
        minutes=int(match.group("m")),
        seconds=int(match.group("s") or 0),
        microseconds=micros,
    )


def load_local_settings(script_root: Path, environ: MutableMapping[str, str]) -> Path | None:
    """Copy `Values` from local.settings.json (or the example file) into `environ`.

    Variables already present in `environ` win, so a caller can override any setting.
    Returns the file that was read, or None when there is none.
    """
    for name in ("local.settings.json", "local.settings.example.json"):
        path = script_root / name
        if path.is_file():
            break
    else:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path}: invalid JSON: {exc}") from exc
    if data.get("IsEncrypted"):
        raise HostConfigError(f"{path}: encrypted settings are not supported; decrypt them first")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise HostConfigError(f"{path}: 'Values' must be an object")
    for key, value in values.items():
        if key not in environ and value is not None:
            environ[key] = value if isinstance(value, str) else json.dumps(value)
    return path


def local_http_port(script_root: Path) -> int | None:
    """`Host.LocalHttpPort` from local.settings.json, when present."""
    path = script_root / "local.settings.json"
    if not path.is_file():
        return None
    try:
        port = json.loads(path.read_text(encoding="utf-8-sig")).get("Host", {}).get("LocalHttpPort")
    except (json.JSONDecodeError, AttributeError):
        return None
    return int(port) if port else None


def resolve_setting_refs(text: str, environ: MutableMapping[str, str] | None = None) -> str:
    """Replace `%NAME%` with the app setting NAME, as binding expressions do."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostConfigError(f"app setting {name!r} is not set (referenced as %{name}%)")
        return env[name]

    return _SETTING_REF.sub(lookup, text)


def storage_connection_string(connection: str | None, environ: MutableMapping[str, str] | None = None) -> str:
    """Resolve a binding's `connection` to a connection string.

    The host looks the name up as given, then with the `AzureWebJobs` prefix; an empty
    name means `AzureWebJobsStorage`. `UseDevelopmentStorage=true` means the emulator
    on its default ports.
    """
    env = os.environ if environ is None else environ
    name = connection or "AzureWebJobsStorage"
    value = env.get(name) or env.get(f"AzureWebJobs{name}")
    if not value:
        raise HostConfigError(f"storage connection setting {name!r} is not set")
    if value.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEV_CONNECTION_STRING
    return value


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: timedelta = timedelta(minutes=1)
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    def threshold(self) -> int:
        """The in-flight count at or below which a new batch is fetched."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return (self.batch_size // 2) * (os.cpu_count() or 1)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    functions: tuple[str, ...] | None = None


def _queue_options(raw: dict[str, Any]) -> QueueOptions:
    def get(key: str) -> Any:
        # host.json keys are case-insensitive.
        for k, v in raw.items():
            if k.lower() == key.lower():
                return v
        return None

    opts: dict[str, Any] = {}
    if (v := get("batchSize")) is not None:
        opts["batch_size"] = int(v)
        if not 1 <= opts["batch_size"] <= 32:
            raise HostConfigError("extensions.queues.batchSize must be between 1 and 32")
    if (v := get("newBatchThreshold")) is not None:
        opts["new_batch_threshold"] = int(v)
    if (v := get("maxPollingInterval")) is not None:
        opts["max_polling_interval"] = _duration(v)
        if opts["max_polling_interval"] < timedelta(milliseconds=100):
            raise HostConfigError("extensions.queues.maxPollingInterval must not be less than 00:00:00.100")
    if (v := get("visibilityTimeout")) is not None:
        opts["visibility_timeout"] = _duration(v)
    if (v := get("maxDequeueCount")) is not None:
        opts["max_dequeue_count"] = int(v)
        if opts["max_dequeue_count"] < 1:
            raise HostConfigError("extensions.queues.maxDequeueCount must be at least 1")
    if (v := get("messageEncoding")) is not None:
        enc = str(v).lower()
        if enc not in ("base64", "none"):
            raise HostConfigError("extensions.queues.messageEncoding must be 'base64' or 'none'")
        opts["message_encoding"] = enc
    return QueueOptions(**opts)


def _duration(value: Any) -> timedelta:
    # Older host.json files give milliseconds as a number.
    if isinstance(value, (int, float)):
        return timedelta(milliseconds=value)
    return parse_timespan(str(value))


def load_host_json(script_root: Path) -> HostConfig:
    """Read host.json (version 2.0); a missing file means all defaults."""
    path = script_root / "host.json"
    if not path.is_file():
        log.warning("no host.json in %s; using defaults", script_root)
        return HostConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path}: invalid JSON: {exc}") from exc
    if str(data.get("version", "")) != "2.0":
        raise HostConfigError(f"{path}: 'version' must be \"2.0\"")
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", "api")
    functions = data.get("functions")
    return HostConfig(
        route_prefix=str(prefix).strip("/"),
        queues=_queue_options(extensions.get("queues") or {}),
        functions=tuple(functions) if isinstance(functions, list) else None,
    )
