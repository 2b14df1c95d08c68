"""The workbook preview turns what the OpenTelemetry SDK exports into the workbook's chart data."""

from __future__ import annotations

import io

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, ConsoleMetricExporter, MetricReader

from devtools.workbook_preview import charts, render_page, rows_from_export


class _Collect(MetricReader):
    """A reader exported by hand (collect), like one periodic export."""

    def __init__(self, exporter: ConsoleMetricExporter) -> None:
        super().__init__(
            preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
        )
        self.exporter = exporter

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:  # type: ignore[override]
        self.exporter.export(metrics_data)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


@pytest.fixture
def exported() -> io.StringIO:
    """Two exports of the app's instruments, as JSON lines."""
    out = io.StringIO()
    reader = _Collect(ConsoleMetricExporter(out=out, formatter=lambda data: data.to_json(indent=None) + "\n"))
    meter = MeterProvider(metric_readers=[reader]).get_meter("graphhooks")
    received = meter.create_counter("graphhooks.notifications.received")
    rejected = meter.create_counter("graphhooks.notifications.rejected")
    duration = meter.create_histogram("graphhooks.delta.duration", unit="s")
    received.add(3, {"source": "graph"})
    rejected.add(1, {"reason": "unknown subscription", "source": "graph"})
    duration.record(0.5)
    duration.record(1.5)
    reader.collect()
    received.add(2, {"source": "graph"})
    duration.record(4.0)
    reader.collect()
    return out


def test_counters_add_up_across_exports(exported: io.StringIO) -> None:
    data = charts(rows_from_export(exported.getvalue().splitlines()))
    notifications = data["notifications"]
    assert sum(notifications["notifications.received"].values()) == 5
    assert sum(notifications["notifications.rejected"].values()) == 1
    assert list(data["rejected"]) == ["unknown subscription"]


def test_duration_is_the_mean_and_max_of_what_was_recorded(exported: io.StringIO) -> None:
    rows = rows_from_export(exported.getvalue().splitlines())
    durations = [row for row in rows if row.name == "graphhooks.delta.duration"]
    assert sum(row.value_sum for row in durations) == 6.0
    assert sum(row.value_count for row in durations) == 3
    assert max(row.value_max for row in durations) == 4.0


def test_the_page_draws_each_chart_of_the_workbook(exported: io.StringIO) -> None:
    book = {
        "items": [
            {"type": 1, "name": "title", "content": {"json": "## x"}},
            {"type": 3, "name": "notifications", "content": {"title": "Notifications"}},
            {"type": 3, "name": "renewals", "content": {"title": "Renewals"}},
        ]
    }
    page = render_page(book, charts(rows_from_export(exported.getvalue().splitlines())))
    assert page.count("<h3>") == 2
    assert "notifications.received (5)" in page
    assert "No data in this run" in page  # renewals: nothing was counted
