"""Structured log lines: an event name plus key=value fields.

The text stays readable locally (``delta.run subscription_id=… events=3 duration_ms=41.2``)
and the same fields go in the record's ``extra``, which Application Insights stores as
custom dimensions. Callers pass ids, counts and durations only: never a clientState, a
token, resource data or an item's name.
"""

from __future__ import annotations

import logging
from typing import Any

# LogRecord's own attributes: a field with one of these names would clash in ``extra``.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as text and as the record's extra attributes."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={_text(value)}" for key, value in fields.items() if value is not None)
    # OpenTelemetry attributes take no None: a missing value is left out of the dimensions.
    extra = {(f"field_{key}" if key in _RESERVED else key): value for key, value in fields.items() if value is not None}
    logger.log(level, "%s %s", event, text, extra={"event": event, **extra})


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    # A value with spaces is quoted so a reader (or a parser) can tell the fields apart.
    return f'"{text}"' if " " in text or not text else text
