"""Figures, percentiles, the machine description and the one summary table."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, against what, and whether the goal is met (None: no goal)."""

    bench: str
    figure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""
    met: bool | None = None


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by linear interpolation (NaN for no samples)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    """The median (NaN for no samples)."""
    return statistics.median(samples) if samples else float("nan")


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds."""
    return f"{seconds * 1000:.1f} ms"


def rate(per_second: float, unit: str = "/s") -> str:
    """A rate, rounded for reading."""
    return f"{per_second:,.0f} {unit}" if per_second >= 100 else f"{per_second:,.1f} {unit}"


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as ``1.23x`` (``-`` when the baseline is zero)."""
    return f"{value / baseline:.2f}x" if baseline else "-"


def machine() -> str:
    """Cores, CPU model and Python version: the context every figure needs."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()} ({platform.system()})"


def verdict(met: bool | None) -> str:
    """The goal column's word."""
    return "" if met is None else ("yes" if met else "NO")


def table(rows: Sequence[Row]) -> str:
    """One fixed-width table of every row, grouped by benchmark in run order."""
    header = ("benchmark", "figure", "value", "baseline", "ratio", "goal", "met")
    cells = [header] + [(r.bench, r.figure, r.value, r.baseline, r.ratio, r.goal, verdict(r.met)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    out = [line(header), rule]
    previous = None
    for row in cells[1:]:
        if previous is not None and row[0] != previous:
            out.append("")
        out.append(line(row))
        previous = row[0]
    return "\n".join(out)


def say(text: str) -> None:
    """Progress and per-benchmark figures, printed as they come (flushed: runs are long)."""
    print(text, flush=True)
