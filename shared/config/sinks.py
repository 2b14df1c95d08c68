"""SINKS: a JSON list of destinations, parsed into frozen entries; a bad entry is named.

Each sink is fed by its own queue (``sink-{index}-{type}`` or the entry's ``name``)
and poisons into ``<queue>-poison``. The parsing is pure: secrets named by a
setting are read from the same mapping as the other settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from shared.config.storage import STORAGE_SETTING, storage_connection
from shared.errors import InvalidSettingError, InvalidTenantError, MissingSettingError
from shared.model.event_formats import CONTENT_MODES, ContentMode
from shared.model.hosts import is_loopback
from shared.model.schedule import DEFAULT_HORIZON_HOURS, MAX_HORIZON_HOURS
from shared.model.sinks import (
    DEFAULT_TEAMS_WINDOW,
    KEY,
    MAX_SINKS,
    MAX_TEAMS_WINDOW,
    BlobSink,
    Delivery,
    SinkConfig,
    TeamsSink,
    WebhookSink,
)
from shared.model.tenant import canonical_tenant_id

# Queue names: 3-63 characters, lowercase letters, digits and single hyphens; "-poison" must still fit.
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_MAX_QUEUE_NAME = 63 - len("-poison")


def parse_sinks(environ: Mapping[str, str]) -> tuple[SinkConfig, ...]:
    """Read SINKS (default ``[]``); raise InvalidSettingError naming the entry and the field."""
    text = environ.get(KEY, "").strip() or "[]"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSettingError(KEY, f"not JSON ({exc.msg})") from exc
    if not isinstance(raw, list):
        raise InvalidSettingError(KEY, "must be a JSON list")
    if len(raw) > MAX_SINKS:
        raise InvalidSettingError(KEY, f"at most {MAX_SINKS} sinks")
    sinks = tuple(_entry(index, entry, environ) for index, entry in enumerate(raw))
    queues = [s.delivery.queue for s in sinks]
    for queue in queues:
        if queues.count(queue) > 1:
            raise InvalidSettingError(KEY, f"two sinks use the queue {queue!r}")
    return sinks


def sink_queues(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The sinks' queue names, for binding the triggers at import (no secrets needed)."""
    return tuple(s.delivery.queue for s in parse_sinks(environ))


def _entry(index: int, entry: Any, environ: Mapping[str, str]) -> SinkConfig:
    if not isinstance(entry, dict):
        raise _invalid(index, "is not an object")
    kind = entry.get("type")
    if kind not in ("webhook", "blob", "teams"):
        raise _invalid(index, f"unknown type {kind!r} (webhook, blob or teams)")
    delivery = _delivery(index, kind, entry)
    if kind == "webhook":
        return WebhookSink(
            delivery,
            _url(index, entry),
            _secret(index, entry, environ),
            concurrency=_int(index, entry, "concurrency", 8, 1),
            rate_per_second=_positive(index, entry, "ratePerSecond", None),
            timeout_seconds=_positive(index, entry, "timeoutSeconds", 10.0) or 10.0,
            cloudevents=_content_mode(index, entry),
        )
    if kind == "teams":
        window = _positive(index, entry, "windowSeconds", DEFAULT_TEAMS_WINDOW) or DEFAULT_TEAMS_WINDOW
        if window > MAX_TEAMS_WINDOW:
            raise _invalid(index, f"windowSeconds is at most {MAX_TEAMS_WINDOW:.0f}")
        return TeamsSink(delivery, _url(index, entry), window)
    return _blob(index, entry, environ, delivery)


def _blob(index: int, entry: dict[str, Any], environ: Mapping[str, str], delivery: Delivery) -> BlobSink:
    container = entry.get("container")
    # Container names follow the queue names' rule: 3-63 lowercase letters, digits, single hyphens.
    if not isinstance(container, str) or not 3 <= len(container) <= 63 or not _QUEUE_NAME.match(container):
        raise _invalid(index, "needs a container (3-63 lowercase letters, digits and hyphens)")
    setting = entry.get("connection", STORAGE_SETTING)
    if not isinstance(setting, str) or not setting:
        raise _invalid(index, "connection must name a setting")
    try:
        # A connection string, or the identity-based form (<setting>__blobServiceUri or __accountName).
        connection = storage_connection(environ, setting, services=("blob",))
    except MissingSettingError as exc:
        raise _invalid(index, f"connection names the setting {exc.key}, which is empty") from None
    except InvalidSettingError as exc:
        raise _invalid(index, f"connection: {exc}") from None
    on_delete = entry.get("onDelete", "delete")
    if on_delete not in ("delete", "move"):
        raise _invalid(index, "onDelete must be 'delete' or 'move'")
    return BlobSink(delivery, container, setting, connection, keep_deleted=on_delete == "move")


def _delivery(index: int, kind: str, entry: dict[str, Any]) -> Delivery:
    attempts = None if entry.get("maxAttempts") is None else _int(index, entry, "maxAttempts", 1, 1)
    hours = _positive(index, entry, "retryHours", DEFAULT_HORIZON_HOURS) or DEFAULT_HORIZON_HOURS
    if hours > MAX_HORIZON_HOURS:
        raise _invalid(index, f"retryHours is at most {MAX_HORIZON_HOURS:.0f} (7 days)")
    return Delivery(index, _queue_name(index, kind, entry), attempts, hours, _tenants(index, entry))


def _tenants(index: int, entry: dict[str, Any]) -> frozenset[str]:
    raw = entry.get("tenants")
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise _invalid(index, "tenants must be a list of tenant ids")
    try:
        return frozenset(canonical_tenant_id(t) for t in raw)
    except InvalidTenantError as exc:
        raise _invalid(index, f"tenants: {exc}") from None


def sink_tenants(environ: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Each sink queue that names ``tenants``, with them (the fan-out gives it only their events)."""
    return {s.delivery.queue: s.delivery.tenants for s in parse_sinks(environ) if s.delivery.tenants}


def _queue_name(index: int, kind: str, entry: dict[str, Any]) -> str:
    name = entry.get("name", f"sink-{index}-{kind}")
    if not isinstance(name, str) or not 3 <= len(name) <= _MAX_QUEUE_NAME or not _QUEUE_NAME.match(name):
        raise _invalid(index, f"name must be a queue name of 3-{_MAX_QUEUE_NAME} lowercase letters, digits, hyphens")
    return name


def _url(index: int, entry: dict[str, Any]) -> str:
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        raise _invalid(index, "needs a url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(index, "url must be an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise _invalid(index, "url must be https (plain http only on loopback)")
    return url


def _secret(index: int, entry: dict[str, Any], environ: Mapping[str, str]) -> str:
    """``secret`` inline, or ``secretSetting``: a setting (in Azure, a Key Vault reference) holding it."""
    secret = entry.get("secret")
    setting = entry.get("secretSetting")
    if secret is not None and setting is not None:
        raise _invalid(index, "give secret or secretSetting, not both")
    if setting is not None:
        if not isinstance(setting, str) or not environ.get(setting, "").strip():
            raise _invalid(index, f"secretSetting names the setting {setting}, which is empty")
        secret = environ[setting].strip()
    if not isinstance(secret, str) or not secret:
        raise _invalid(index, "needs a secret (whsec_...) or a secretSetting")
    if not _valid_secret(secret):
        raise _invalid(index, "the secret must be whsec_ followed by base64")  # never echo it
    return secret


def _valid_secret(secret: str) -> bool:
    import base64
    import binascii

    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)) >= 16
    except (binascii.Error, ValueError):
        return False


def _content_mode(index: int, entry: dict[str, Any]) -> ContentMode | None:
    """``cloudevents``: the CloudEvents HTTP content mode a webhook sends in; absent: the native event."""
    mode = entry.get("cloudevents")
    if mode is None:
        return None
    for known in CONTENT_MODES:
        if mode == known:
            return known
    raise _invalid(index, f"cloudevents must be {' or '.join(repr(m) for m in CONTENT_MODES)}")


def _int(index: int, entry: dict[str, Any], key: str, default: int, low: int) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _invalid(index, f"{key} must be a whole number of at least {low}")
    return value


def _positive(index: int, entry: dict[str, Any], key: str, default: float | None) -> float | None:
    value = entry.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise _invalid(index, f"{key} must be a positive number")
    return float(value)


def _invalid(index: int, reason: str) -> InvalidSettingError:
    return InvalidSettingError(KEY, f"entry {index}: {reason}")
