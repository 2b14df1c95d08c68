"""Structured log lines, and the redaction of secrets from every log record.

``log_event`` writes an event name plus key=value fields. The text stays readable locally
(``delta.run subscription_id=… events=3 duration_ms=41.2``) and the same fields go in the
record's ``extra``, which Application Insights stores as custom dimensions. Callers pass
ids, counts and durations only: never a clientState, a token, resource data or an item's name.

Libraries are not so careful: httpx (under the msgraph SDK) logs every request's full URL
at INFO, and a Graph delta URL carries its ``$deltatoken``/``token``; urllib3 and aiohttp
log URLs at DEBUG; an exception's text often holds the URL it failed on. So ``redact_logs``
(run when this module is imported, which function_app.py does first, in the Functions
worker and in the local host alike) makes every record redacted before any handler sees
it: query values such as ``$deltatoken=``, ``$skiptoken=``, ``token=``, ``code=``, ``sig=``
and ``validationToken=`` become ``REDACTED``, in the message, its arguments and the
exception text. It wraps the log record factory, so handlers added later (Azure Monitor's
exporter, the worker's) get redacted records too, and it also filters the root handlers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

# LogRecord's own attributes: a field with one of these names would clash in ``extra``.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

REDACTED = "REDACTED"
# Loggers that write request URLs at INFO: kept to warnings (the redaction covers them anyway).
NOISY_LOGGERS = ("httpx", "httpcore")
# Names whose values are secrets wherever they appear: delta, skip, change and validation
# tokens, OAuth tokens, client secrets and clientState.
_SECRET_NAMES = r"[a-z0-9_.-]*token|client_secret|client_assertion|assertion|password|secret|clientstate"
# Names that are secrets in a query string only (a log field ``code=`` may be a Graph error code):
# function keys and OAuth codes, SAS signatures, API keys, and an admin consent's signed state.
_QUERY_NAMES = r"code|sig|signature|state|(?:x-functions-|subscription-|api[-_]?)?key"
_VALUE = r"('[^']*'|\"[^\"]*\"|[^&\s\"'#<>)]+)"
# ``name=value`` in a query string, a form body, an OData function (``delta(token='…')``) or a
# key=value log line; the name may carry OData's ``$``, raw or percent-encoded.
_ASSIGNMENT = re.compile(rf"(?<![\w$%-])((?:\$|%24)?(?:{_SECRET_NAMES})(?:=|%3D)){_VALUE}", re.IGNORECASE)
_QUERY = re.compile(rf"([?&;](?:{_QUERY_NAMES})(?:=|%3D)){_VALUE}", re.IGNORECASE)
# ``"name": "value"`` in JSON text (never ``code``: Graph's error codes are worth reading).
_JSON_FIELD = re.compile(
    r"(\"(?:[a-z0-9_.@-]*token|clientstate|client_secret|secret|password)\"\s*:\s*\")((?:[^\"\\]|\\.)*)(\")",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\bbearer\s+)[\w.~+/=-]+", re.IGNORECASE)
_PLAIN = (int, float, bool, type(None))


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


def redact(text: str) -> str:
    """``text`` with the values of secret parameters, JSON fields and bearer tokens replaced."""
    if "=" in text or "%3" in text:
        text = _QUERY.sub(rf"\1{REDACTED}", _ASSIGNMENT.sub(rf"\1{REDACTED}", text))
    if '"' in text:
        text = _JSON_FIELD.sub(rf"\1{REDACTED}\3", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: its message, its arguments and its exception text."""
    record.msg = _redacted(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {key: _redacted(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redacted(value) for value in record.args)
    if record.exc_info and not record.exc_text:
        # Formatters use exc_text when it is set: the traceback's text, redacted once.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))


def _redacted(value: Any) -> Any:
    """A str redacted; any other object (an httpx.URL, an exception) as redacted text if it held a secret."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ is the formatter's to report, not ours
        return value
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class SecretFilter(logging.Filter):
    """A handler filter that redacts each record (for records made without the factory)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_logs() -> None:
    """Redact every log record from now on, whichever handler gets it; idempotent."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts", False):

        def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            redact_record(record)
            return record

        redacting.redacts = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


redact_logs()
