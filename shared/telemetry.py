"""OpenTelemetry traces and metrics, exported to Application Insights when it is configured.

``configure`` calls azure-monitor-opentelemetry's ``configure_azure_monitor`` once, and
only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; it runs when the services
are first built, never at import (a cold start must answer Graph's handshake in time).
Without it the OpenTelemetry API's no-op providers take every call: nothing is
exported and nothing fails. The metric names below are what the dashboards read.

A trace crosses the queue hop: the HTTP path stores its span's W3C ``traceparent`` in
the envelope, and the queue trigger starts its span with that parent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
METER = "graphhooks"
RECEIVED = "graphhooks.notifications.received"
ENQUEUED = "graphhooks.notifications.enqueued"
REJECTED = "graphhooks.notifications.rejected"
DELTA_RUNS = "graphhooks.delta.runs"
DELTA_DURATION = "graphhooks.delta.duration"
EVENTS_EMITTED = "graphhooks.events.emitted"
RENEWALS = "graphhooks.renewals"
QUEUE_DEPTH = "graphhooks.queue.depth"
# Multi-tenant: tenants suspended (their token refused), by AADSTS code, and resumed.
TENANTS_SUSPENDED = "graphhooks.tenants.suspended"
TENANTS_RESUMED = "graphhooks.tenants.resumed"

_lock = threading.Lock()
_configured = False
_instruments: dict[str, Any] = {}
# The queue depths of the last health snapshot, read by the observable gauge.
_depths: dict[str, int] = {}


def configure(environ: Mapping[str, str]) -> bool:
    """Set up export to Application Insights once, if its connection string is set; True if it was."""
    global _configured
    connection = (environ.get(CONNECTION_SETTING) or "").strip()
    if not connection:
        return False
    with _lock:
        if not _configured:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(connection_string=connection)
            _configured = True
            log.info("telemetry: exporting traces, metrics and logs to Application Insights")
    return True


def reset_instruments() -> None:
    """Forget the instruments, so a test's fresh meter provider gets its own."""
    with _lock:
        _instruments.clear()
        _depths.clear()


def _instrument(name: str) -> Any:
    found = _instruments.get(name)
    if found is not None:
        return found
    from opentelemetry import metrics

    with _lock:
        if name not in _instruments:
            meter = metrics.get_meter(METER)
            if name == DELTA_DURATION:
                _instruments[name] = meter.create_histogram(name, unit="s", description="Delta run duration")
            elif name == QUEUE_DEPTH:
                _instruments[name] = meter.create_observable_gauge(
                    name, callbacks=[_observe_depths], unit="{message}", description="Approximate queue depth"
                )
            else:
                _instruments[name] = meter.create_counter(name, unit="1")
        return _instruments[name]


def count(name: str, amount: int = 1, **attributes: str) -> None:
    """Add ``amount`` to the counter ``name``; zero adds nothing."""
    if amount:
        counter: Counter = _instrument(name)
        counter.add(amount, attributes or None)


def record_duration(seconds: float) -> None:
    """Record one delta run's duration."""
    histogram: Histogram = _instrument(DELTA_DURATION)
    histogram.record(seconds)


def observe_depths(depths: Mapping[str, int]) -> None:
    """Keep the queue depths a health snapshot read, for the gauge's next collection."""
    _depths.clear()
    _depths.update(depths)
    _instrument(QUEUE_DEPTH)


def _observe_depths(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(depth, {"queue": queue}) for queue, depth in list(_depths.items())]


@contextmanager
def span(name: str, traceparent: str | None = None, **attributes: str | int) -> Iterator[Span]:
    """A span, current inside the block, whose parent is ``traceparent`` when given (W3C format)."""
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    context = extract({"traceparent": traceparent}) if traceparent else None
    tracer = trace.get_tracer(METER)
    with tracer.start_as_current_span(name, context=context, attributes=attributes or None) as current:
        yield current


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when no span is recording."""
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")
