"""EVENT_FORMAT: the form change events take on graph-changes and the sink queues."""

from __future__ import annotations

from collections.abc import Mapping

from shared.config.environment import optional
from shared.errors import InvalidSettingError
from shared.model.event_formats import EVENT_FORMATS, NATIVE

KEY = "EVENT_FORMAT"


def event_format(environ: Mapping[str, str]) -> str:
    """``native`` (the default: the JSON object of schemas/change-event.schema.json) or ``cloudevents``."""
    value = (optional(environ, KEY) or NATIVE).lower()
    if value not in EVENT_FORMATS:
        raise InvalidSettingError(KEY, f"must be one of {', '.join(EVENT_FORMATS)}")
    return value
