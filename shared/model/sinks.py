"""The sinks: where change events are delivered, and how each retries. Parsed from SINKS by config/sinks.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shared.model.connection import StorageConnection
from shared.model.event_formats import ContentMode
from shared.model.schedule import DEFAULT_HORIZON_HOURS, RetryPolicy

# The connection a blob sink uses unless its entry names another.
DEFAULT_CONNECTION_SETTING = "AzureWebJobsStorage"
KEY = "SINKS"
# Azure Functions binds a trigger to a queue name when the app is indexed: at most this many sinks.
MAX_SINKS = 8
DEFAULT_TEAMS_WINDOW = 30.0
MAX_TEAMS_WINDOW = 120.0


@dataclass(frozen=True)
class Delivery:
    """What every sink shares: its queue and how long it retries (``retryHours``, ``maxAttempts``)."""

    index: int
    queue: str
    max_attempts: int | None = None
    retry_hours: float = DEFAULT_HORIZON_HOURS
    # TENANT_MODE=multi: the only tenants whose events this sink receives (empty: every tenant's).
    tenants: frozenset[str] = frozenset()

    @property
    def poison_queue(self) -> str:
        """Where refused events, and events failing past the horizon, go, as the Functions host names it."""
        return f"{self.queue}-poison"

    @property
    def policy(self) -> RetryPolicy:
        """The sink's retry schedule."""
        return RetryPolicy(horizon=timedelta(hours=self.retry_hours), max_attempts=self.max_attempts)


@dataclass(frozen=True)
class WebhookSink:
    """POST each event, signed per Standard Webhooks (the secret is never logged)."""

    delivery: Delivery
    url: str
    secret: str = field(repr=False)
    concurrency: int = 8
    rate_per_second: float | None = None
    timeout_seconds: float = 10.0
    # "cloudevents": send a CloudEvent in "binary" or "structured" HTTP content mode; None: the native event.
    cloudevents: ContentMode | None = None
    type: str = "webhook"


@dataclass(frozen=True)
class BlobSink:
    """Mirror the drives' files into a blob container of a storage account."""

    delivery: Delivery
    container: str
    connection_setting: str = DEFAULT_CONNECTION_SETTING
    connection: StorageConnection = field(default_factory=StorageConnection, repr=False)
    keep_deleted: bool = False
    type: str = "blob"


@dataclass(frozen=True)
class TeamsSink:
    """Post an Adaptive Card per subscription and window to a Teams Workflows URL."""

    delivery: Delivery
    url: str = field(repr=False)  # a Workflows URL carries its signature in the query
    window_seconds: float = DEFAULT_TEAMS_WINDOW
    type: str = "teams"


SinkConfig = WebhookSink | BlobSink | TeamsSink
