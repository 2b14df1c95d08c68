"""Draw the Application Insights workbook's charts from metrics the local stack really exported.

`python -m devtools.workbook_preview` starts Azurite, the Graph simulator and the local
host, the host with an OpenTelemetry SDK meter provider that writes every export to a
JSON-lines file (the app's own instruments, exactly as they would go to Application
Insights, with delta temporality like the Azure Monitor exporter). It then subscribes,
changes files, posts notifications Graph would never send (so some are rejected) and
probes /api/health (the queue-depth gauge). The exported points become rows shaped like
App Insights' customMetrics (name, timestamp, valueSum, valueCount, valueMax,
customDimensions); each chart of infra/app/workbook.json is computed from them with the
same aggregation as its KQL query, drawn as SVG, and headless Chromium saves the page
as docs/workbook.png. Azure's workbook renderer is not involved: this shows the charts'
data and shape, not the portal's look.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .azurite import ROOT, free_port, wait_for_port
from .launch import Child
from .stack import DEMO_DRIVE, LocalStack, seed_demo_drive, start_stack

WORKBOOK = ROOT / "infra" / "app" / "workbook.json"
BIN_SECONDS = 10  # the workbook bins by 5 minutes; a two-minute local run needs finer bins


@dataclass(frozen=True)
class Row:
    """One customMetrics row."""

    name: str
    timestamp: float  # seconds since the epoch
    value_sum: float
    value_count: int
    value_max: float
    dimensions: dict[str, str]


# -- the host, with a meter provider that writes to a file -------------------------------


def run_host_with_metrics(metrics_file: Path, host_args: list[str]) -> int:
    """Run the local host in this process with the SDK meter provider exporting to ``metrics_file``."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableGauge
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    from .host.__main__ import main as host_main

    out = metrics_file.open("a", encoding="utf-8")
    delta: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
        ObservableGauge: AggregationTemporality.CUMULATIVE,
    }
    exporter = ConsoleMetricExporter(
        out=out, formatter=lambda data: data.to_json(indent=None) + "\n", preferred_temporality=delta
    )
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=2000)])
    metrics.set_meter_provider(provider)
    try:
        return host_main(host_args)
    finally:
        provider.shutdown()  # the last export
        out.close()


def start_metered_host(stack: LocalStack, metrics_file: Path) -> Child:
    """Start the host as a child process whose metrics go to ``metrics_file``."""
    command = [sys.executable, "-m", "devtools.workbook_preview", "--host-metrics", str(metrics_file)]
    command += ["--", "--port", str(stack.host_port)]
    host = Child(command, {**os.environ, **stack.env}, stack.run_dir / "host.log")
    process = host.spawn()
    wait_for_port(stack.host_port, timeout=30, process=process)
    return host


# -- a few minutes of traffic -------------------------------------------------------------


def _post(url: str, body: bytes, content_type: str = "application/json") -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def drive_traffic(stack: LocalStack, rounds: int) -> None:
    """Subscribe, then change files each round, with some notifications the app must reject."""
    from .simclient import SimControl

    await seed_demo_drive(stack.sim.control_url)
    stack.run_function("renew")
    async with SimControl(stack.sim.control_url) as control:
        for _ in range(150):
            if await control.subscriptions():
                break
            await asyncio.sleep(0.2)
        items: list[str] = []
        for number in range(rounds):
            for index in range(number % 3 + 1):
                created = await control.create_item(DEMO_DRIVE, f"report {number}-{index}.docx", "draft")
                items.append(str(created["id"]))
            if len(items) > 2:
                await control.update_item(DEMO_DRIVE, items[-2], f"revision {number}")
            if number % 2 and items:
                await control.delete_item(DEMO_DRIVE, items.pop(0))
            # What a stranger could post: not JSON, and a notification for an unknown subscription.
            notifications = f"{stack.base_url}/api/notifications"
            await asyncio.to_thread(_post, notifications, b"not json", "text/plain")
            strangers = [
                {"subscriptionId": "00000000-0000-0000-0000-000000000000", "clientState": "x"},
                {
                    "subscriptionId": "00000000-0000-0000-0000-000000000000",
                    "clientState": "x",
                    "changeType": "updated",
                    "resource": f"drives/{DEMO_DRIVE}/root",
                    "tenantId": "00000000-0000-0000-0000-000000000000",
                    "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
                },
            ]
            await asyncio.to_thread(_post, notifications, json.dumps({"value": strangers}).encode())
            await asyncio.to_thread(_get, f"{stack.base_url}/api/health")
            await asyncio.sleep(BIN_SECONDS * 0.8)


# -- customMetrics rows and the workbook's aggregations -----------------------------------


def rows_from_export(lines: Iterable[str]) -> list[Row]:
    """customMetrics rows from the exporter's JSON lines (one row per data point)."""
    rows: list[Row] = []
    for line in lines:
        if not line.strip():
            continue
        for resource in json.loads(line).get("resource_metrics", []):
            for scope in resource.get("scope_metrics", []):
                for metric in scope.get("metrics", []):
                    for point in metric.get("data", {}).get("data_points", []):
                        rows.append(_row(metric["name"], point))
    return rows


def _row(name: str, point: dict[str, Any]) -> Row:
    dims = {str(k): str(v) for k, v in (point.get("attributes") or {}).items()}
    when = int(point["time_unix_nano"]) / 1e9
    if "count" in point:  # histogram
        return Row(name, when, float(point["sum"]), int(point["count"]), float(point.get("max", 0)), dims)
    value = float(point["value"])
    return Row(name, when, value, 1, value, dims)


Series = dict[str, dict[int, float]]  # series name -> bin start -> value


def _bin(timestamp: float) -> int:
    return int(timestamp // BIN_SECONDS * BIN_SECONDS)


def sum_by(rows: list[Row], names: tuple[str, ...], key: Callable[[Row], str]) -> Series:
    """`summarize sum(valueSum) by <key>, bin(timestamp, …)`."""
    series: Series = defaultdict(lambda: defaultdict(float))
    for row in rows:
        if row.name in names:
            series[key(row)][_bin(row.timestamp)] += row.value_sum
    return series


def duration(rows: list[Row]) -> Series:
    """`summarize mean = sum(valueSum) / sum(valueCount), max = max(valueMax) by bin(timestamp, …)`."""
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    maxima: dict[int, float] = defaultdict(float)
    for row in rows:
        if row.name == "graphhooks.delta.duration" and row.value_count:
            at = _bin(row.timestamp)
            sums[at] += row.value_sum
            counts[at] += row.value_count
            maxima[at] = max(maxima[at], row.value_max)
    return {"mean": {at: sums[at] / counts[at] for at in counts}, "max": dict(maxima)}


def depth(rows: list[Row]) -> Series:
    """`summarize depth = max(valueMax) by queue, bin(timestamp, …)`."""
    series: Series = defaultdict(dict)
    for row in rows:
        if row.name == "graphhooks.queue.depth":
            queue, at = row.dimensions.get("queue", ""), _bin(row.timestamp)
            series[queue][at] = max(series[queue].get(at, 0.0), row.value_max)
    return series


def charts(rows: list[Row]) -> dict[str, Series]:
    """Each workbook chart's series, keyed by the workbook item's name."""
    by_name: Callable[[Row], str] = lambda row: row.name.removeprefix("graphhooks.")  # noqa: E731
    return {
        "notifications": sum_by(
            rows,
            (
                "graphhooks.notifications.received",
                "graphhooks.notifications.enqueued",
                "graphhooks.notifications.rejected",
            ),
            by_name,
        ),
        "rejected": sum_by(rows, ("graphhooks.notifications.rejected",), lambda row: row.dimensions.get("reason", "")),
        "delta-runs": sum_by(rows, ("graphhooks.delta.runs", "graphhooks.events.emitted"), by_name),
        "delta-duration": duration(rows),
        "renewals": sum_by(rows, ("graphhooks.renewals",), lambda row: row.dimensions.get("outcome", "")),
        "queue-depth": depth(rows),
    }


# -- drawing -------------------------------------------------------------------------------

COLOURS = ("#0078d4", "#e3008c", "#00a36c", "#ff8c00", "#8764b8", "#038387")


def svg_chart(series: Series, start: int, end: int, totals: bool = True, width: int = 590, height: int = 220) -> str:
    """A line chart of ``series`` between the bins ``start`` and ``end``, with a legend (and run totals)."""
    if not any(series.values()):
        return f'<div class="empty" style="height:{height}px">No data in this run</div>'
    left, right, top, bottom = 52, 30, 10, 28
    top_value = max(max(points.values()) for points in series.values() if points) or 1.0
    span = max(end - start, BIN_SECONDS)

    def x(at: int) -> float:
        return left + (at - start) / span * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - value / top_value) * (height - top - bottom)

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for fraction in (0, 0.5, 1):
        value = top_value * fraction
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" class="axis" text-anchor="end">{value:.3g}</text>')
    for seconds in range(0, span + 1, max(BIN_SECONDS, span // 6 // BIN_SECONDS * BIN_SECONDS)):
        parts.append(f'<text x="{x(start + seconds):.1f}" y="{height - 8}" class="axis">+{seconds}s</text>')
    legend = []
    for colour, (name, points) in zip(COLOURS, sorted(series.items()), strict=False):
        ordered = [(at, points.get(at, 0.0)) for at in range(start, end + 1, BIN_SECONDS)]
        path = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        total = sum(points.values())
        label = f"{html.escape(name)} ({total:g})" if totals else html.escape(name)
        legend.append(f'<span style="color:{colour}">&#9632;</span> {label}')
    parts.append("</svg>")
    return "".join(parts) + '<div class="legend">' + " &nbsp; ".join(legend) + "</div>"


def render_page(book: dict[str, Any], data: dict[str, Series]) -> str:
    """The workbook's chart items, in order, each with its KQL query's data drawn as SVG."""
    bins = [at for series in data.values() for points in series.values() for at in points]
    start, end = (min(bins), max(bins)) if bins else (0, BIN_SECONDS)
    cells = []
    for item in book["items"]:
        content = item["content"]
        if item["type"] != 3:
            continue
        series = data.get(item["name"], {})
        # Totals of a mean, a maximum or a gauge mean nothing: only counters' legends show them.
        chart = svg_chart(series, start, end, totals=item["name"] not in ("delta-duration", "queue-depth"))
        cells.append(f'<div class="cell"><h3>{html.escape(content["title"])}</h3>{chart}</div>')
    style = """
      body { font-family: 'Segoe UI', 'DejaVu Sans', sans-serif; margin: 16px; background: #faf9f8; color: #323130; }
      h2 { font-weight: 600; margin: 0 0 4px 0; } p { margin: 0 0 12px 0; font-size: 13px; }
      .grid-layout { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
      .cell { background: white; border: 1px solid #e1dfdd; padding: 8px 12px; }
      h3 { font-size: 14px; font-weight: 600; margin: 2px 0 6px 0; }
      .grid { stroke: #edebe9; } .axis { font-size: 10px; fill: #605e5c; }
      .legend { font-size: 12px; margin-top: 2px; } .empty { display: flex; align-items: center;
      justify-content: center; color: #a19f9d; font-size: 13px; }
    """
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        "<h2>Graph change notifications</h2>"
        f"<p>The workbook's charts (infra/app/workbook.json), computed from the metrics a local run exported; "
        f"{BIN_SECONDS}-second bins instead of 5 minutes. Figures in the counters' legends are the run's totals.</p>"
        f"<div class='grid-layout'>{''.join(cells)}</div></body></html>"
    )


def screenshot(page: Path, png: Path) -> None:
    """Save ``page`` as ``png`` with headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1300,1060", page.as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run the local stack with exported metrics, then draw the workbook's charts."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--host-metrics"]:  # the child: the host with the file exporter
        host_args = argv[3:] if argv[2:3] == ["--"] else argv[2:]
        sys.exit(run_host_with_metrics(Path(argv[1]), host_args))
    parser = argparse.ArgumentParser(prog="python -m devtools.workbook_preview", description=__doc__)
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "workbook")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of changes, about 8 s each")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "workbook.png")
    args = parser.parse_args(argv)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = args.run_dir / "metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    stack = start_stack(args.run_dir, with_host=False, extra_env={"HEALTH_CACHE_SECONDS": "1"})
    stack.host_port = free_port()
    stack.env["NOTIFICATION_URL"] = f"{stack.base_url}/api/notifications"
    stack.env["LIFECYCLE_NOTIFICATION_URL"] = f"{stack.base_url}/api/lifecycle"
    try:
        stack.host = start_metered_host(stack, metrics_file)
        asyncio.run(drive_traffic(stack, args.rounds))
    finally:
        if stack.host is not None:
            stack.host.stop(signal.SIGINT)
        stack.stop()
    rows = rows_from_export(metrics_file.read_text().splitlines())
    data = charts(rows)
    page = args.run_dir / "workbook.html"
    page.write_text(render_page(json.loads(WORKBOOK.read_text()), data))
    screenshot(page, args.png)
    totals = {name: round(sum(sum(p.values()) for p in series.values()), 3) for name, series in data.items()}
    print(f"{len(rows)} metric rows; chart totals {totals}; saved {args.png}")


if __name__ == "__main__":
    main()
