"""Simulator settings, filled from the command line or GRAPHSIM_* environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

DEFAULT_TENANT = "11111111-1111-1111-1111-111111111111"
DEFAULT_CLIENT_ID = "22222222-2222-2222-2222-222222222222"
DEFAULT_SECRET = "sim-secret"
# The deployment's user-assigned managed identity (managed_identity.py): its client id and object id.
DEFAULT_MANAGED_IDENTITY_CLIENT_ID = "33333333-3333-3333-3333-333333333333"
DEFAULT_MANAGED_IDENTITY_OBJECT_ID = "44444444-4444-4444-4444-444444444444"


@dataclass
class SimConfig:
    """Everything that shapes the simulator's behaviour."""

    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0
    state_dir: str | None = None
    tenant_id: str = DEFAULT_TENANT
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_SECRET
    managed_identity_client_id: str = DEFAULT_MANAGED_IDENTITY_CLIENT_ID
    managed_identity_object_id: str = DEFAULT_MANAGED_IDENTITY_OBJECT_ID
    page_size: int = 200
    write_latency_ms: int = 0
    delivery_max_batch: int = 100
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    retry_for_seconds: float = 14400.0
    duplicates: int = 1
    # Graph's documented limits; tests shorten some of them.
    validation_timeout_seconds: float = 10.0
    delivery_timeout_seconds: float = 10.0
    subscription_quota: int = 1_000_000
    write_limit: int = 500  # per tenant (Graph: per app per tenant)
    write_window_seconds: float = 20.0
    app_write_limit: int = 0  # across all tenants in the same window (Graph documents 2,000); 0: none
    delta_token_lifetime_seconds: float = 0.0  # 0 = tokens never go stale by age
    delta_lag_seconds: float = 0.0  # changes reach delta this long after their notification
    token_lifetime_seconds: int = 3599
    # Multiplies Event Grid's retry delays and time to live (eventgrid_delivery.py); tests shorten them.
    eventgrid_retry_scale: float = 1.0


_ENV_PREFIX = "GRAPHSIM_"


def _env(name: str, default: str | int | float | None) -> str | None:
    value = os.environ.get(_ENV_PREFIX + name.upper())
    if value is not None:
        return value
    return None if default is None else str(default)


def parse_args(argv: list[str] | None = None) -> SimConfig:
    """Build a :class:`SimConfig` from argv, falling back to GRAPHSIM_* variables."""
    d = SimConfig()
    p = argparse.ArgumentParser(prog="python -m devtools.graphsim", description=__doc__)
    p.add_argument("--host", default=_env("host", d.host))
    p.add_argument("--port", type=int, default=_env("port", d.port))
    p.add_argument("--tls-port", type=int, default=_env("tls_port", d.tls_port))
    p.add_argument("--state-dir", default=_env("state_dir", None))
    p.add_argument("--tenant-id", default=_env("tenant_id", d.tenant_id))
    p.add_argument("--client-id", default=_env("client_id", d.client_id))
    p.add_argument("--client-secret", default=_env("client_secret", d.client_secret))
    p.add_argument("--page-size", type=int, default=_env("page_size", d.page_size))
    p.add_argument("--write-latency-ms", type=int, default=_env("write_latency_ms", 0))
    p.add_argument("--delivery-max-batch", type=int, default=_env("delivery_max_batch", d.delivery_max_batch))
    p.add_argument("--retry-base-seconds", type=float, default=_env("retry_base_seconds", d.retry_base_seconds))
    p.add_argument("--retry-max-seconds", type=float, default=_env("retry_max_seconds", d.retry_max_seconds))
    p.add_argument("--retry-for-seconds", type=float, default=_env("retry_for_seconds", d.retry_for_seconds))
    p.add_argument("--duplicates", type=int, default=_env("duplicates", d.duplicates))
    p.add_argument(
        "--validation-timeout-seconds",
        type=float,
        default=_env("validation_timeout_seconds", d.validation_timeout_seconds),
    )
    p.add_argument(
        "--delivery-timeout-seconds", type=float, default=_env("delivery_timeout_seconds", d.delivery_timeout_seconds)
    )
    p.add_argument("--subscription-quota", type=int, default=_env("subscription_quota", d.subscription_quota))
    p.add_argument("--write-limit", type=int, default=_env("write_limit", d.write_limit))
    p.add_argument("--write-window-seconds", type=float, default=_env("write_window_seconds", d.write_window_seconds))
    p.add_argument("--app-write-limit", type=int, default=_env("app_write_limit", d.app_write_limit))
    p.add_argument("--delta-token-lifetime-seconds", type=float, default=_env("delta_token_lifetime_seconds", 0.0))
    p.add_argument("--delta-lag-seconds", type=float, default=_env("delta_lag_seconds", 0.0))
    p.add_argument(
        "--eventgrid-retry-scale", type=float, default=_env("eventgrid_retry_scale", d.eventgrid_retry_scale)
    )
    a = p.parse_args(argv)
    return SimConfig(
        host=a.host,
        port=a.port,
        tls_port=a.tls_port,
        state_dir=a.state_dir,
        tenant_id=a.tenant_id,
        client_id=a.client_id,
        client_secret=a.client_secret,
        page_size=a.page_size,
        write_latency_ms=a.write_latency_ms,
        delivery_max_batch=a.delivery_max_batch,
        retry_base_seconds=a.retry_base_seconds,
        retry_max_seconds=a.retry_max_seconds,
        retry_for_seconds=a.retry_for_seconds,
        duplicates=a.duplicates,
        validation_timeout_seconds=a.validation_timeout_seconds,
        delivery_timeout_seconds=a.delivery_timeout_seconds,
        subscription_quota=a.subscription_quota,
        write_limit=a.write_limit,
        write_window_seconds=a.write_window_seconds,
        app_write_limit=a.app_write_limit,
        delta_token_lifetime_seconds=a.delta_token_lifetime_seconds,
        delta_lag_seconds=a.delta_lag_seconds,
        eventgrid_retry_scale=a.eventgrid_retry_scale,
    )
