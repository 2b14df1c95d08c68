"""Telemetry and structured logs: what an operator finds in Application Insights, and that nothing leaks."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.logs import log_event
from shared.model.notifications import Envelope, encode_item, pack_items


def in_memory() -> tuple[Any, Any]:
    """Global SDK providers with in-memory exporters, set once per process (OpenTelemetry allows one)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    installed = getattr(trace.get_tracer_provider(), "test_exporters", None)
    if installed is not None:
        return installed  # type: ignore[no-any-return]
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer_provider.test_exporters = (spans, reader)  # type: ignore[attr-defined]
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def metric_points(reader: Any, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def counted(reader: Any, name: str, **attributes: str) -> float:
    return sum(p.value for p in metric_points(reader, name) if dict(p.attributes or {}) == attributes)


def test_without_a_connection_string_nothing_is_configured_or_even_imported():
    code = (
        "import sys; from shared import telemetry; print(telemetry.configure({}), "
        "'azure.monitor.opentelemetry' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_with_a_connection_string_azure_monitor_is_configured_once(monkeypatch):
    import azure.monitor.opentelemetry

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", lambda **kw: calls.append(kw))
    monkeypatch.setattr(telemetry, "_configured", False)
    environ = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"}

    assert telemetry.configure(environ) and telemetry.configure(environ)
    assert calls == [{"connection_string": environ["APPLICATIONINSIGHTS_CONNECTION_STRING"]}]


def test_without_providers_every_call_is_a_harmless_no_op():
    # Runs in a fresh process: no provider installed, nothing exported, nothing raised.
    code = (
        "from shared import telemetry\n"
        "telemetry.count(telemetry.RECEIVED, 3, source='notifications')\n"
        "telemetry.record_duration(0.5)\n"
        "telemetry.observe_depths({'graph-changes': 1})\n"
        "with telemetry.span('x'):\n"
        "    print(telemetry.current_traceparent())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
    assert out.stderr == ""


def test_the_envelope_carries_the_traceparent_only_when_set():
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    received = datetime(2026, 11, 22, tzinfo=UTC)
    items = [{"subscriptionId": "s", "changeType": "updated"}]

    plain = Envelope("notifications", received, items).to_json()
    traced = Envelope("notifications", received, items, traceparent=parent)

    assert "traceparent" not in plain
    assert Envelope.from_json(traced.to_json()).traceparent == parent
    assert Envelope.from_json(plain).traceparent is None
    # A batch split over several messages keeps the parent in each.
    many = Envelope("notifications", received, items * 2000, traceparent=parent)
    parts = pack_items(many, [encode_item(item) for item in many.items])
    assert len(parts) > 1
    assert {Envelope.from_json(p).traceparent for p in parts} == {parent}


def test_a_span_continues_the_trace_named_by_a_traceparent():
    spans, _ = in_memory()
    with telemetry.span("graphhooks.notifications"):
        parent = telemetry.current_traceparent()
    assert parent is not None

    with telemetry.span("graphhooks.process", parent):
        pass

    finished = {s.name: s for s in spans.get_finished_spans()}
    post, process = finished["graphhooks.notifications"], finished["graphhooks.process"]
    assert process.context.trace_id == post.context.trace_id
    assert process.parent is not None and process.parent.span_id == post.context.span_id


def test_counters_histogram_and_queue_gauge_use_the_documented_names():
    _, reader = in_memory()
    before = counted(reader, telemetry.REJECTED, reason="badClientState", source="notifications")

    telemetry.count(telemetry.REJECTED, 2, reason="badClientState", source="notifications")
    telemetry.count(telemetry.RENEWALS, 1, outcome="failed")
    telemetry.record_duration(1.5)
    telemetry.observe_depths({"graph-notifications-poison": 4})

    assert counted(reader, telemetry.REJECTED, reason="badClientState", source="notifications") == before + 2
    assert counted(reader, telemetry.RENEWALS, outcome="failed") >= 1
    assert any(p.count >= 1 for p in metric_points(reader, "graphhooks.delta.duration"))
    assert [
        p.value
        for p in metric_points(reader, "graphhooks.queue.depth")
        if p.attributes["queue"] == "graph-notifications-poison"
    ] == [4]


def test_a_log_event_reads_as_text_and_carries_its_fields(caplog):
    logger = logging.getLogger("tests.telemetry")
    with caplog.at_level(logging.INFO, logger="tests.telemetry"):
        log_event(logger, "delta.run", subscription_id="sub-1", events=3, name="clash", note=None, took=0.25)

    [record] = caplog.records
    assert record.getMessage() == "delta.run subscription_id=sub-1 events=3 name=clash took=0.25"
    assert (record.event, record.subscription_id, record.events) == ("delta.run", "sub-1", 3)
    # A field named like a LogRecord attribute cannot overwrite it.
    assert record.name == "tests.telemetry" and record.field_name == "clash"
    assert not hasattr(record, "note")


def test_a_log_event_below_the_level_costs_nothing(caplog):
    logger = logging.getLogger("tests.telemetry.quiet")
    with caplog.at_level(logging.INFO, logger="tests.telemetry.quiet"):
        log_event(logger, "noise", level=logging.DEBUG, n=1)
    assert caplog.records == []
