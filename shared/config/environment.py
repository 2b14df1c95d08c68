"""Reading and casting the environment: the helpers every setting goes through."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.errors import InvalidSettingError, MissingSettingError


def required(environ: Mapping[str, str], key: str) -> str:
    """The setting's value; MissingSettingError when it is unset or blank."""
    value = environ.get(key, "").strip()
    if not value:
        raise MissingSettingError(key)
    return value


def optional(environ: Mapping[str, str], key: str) -> str | None:
    """The setting's value, or None when it is unset or blank."""
    value = environ.get(key, "").strip()
    return value or None


def seconds(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number of seconds between ``low`` and ``high``; ``default`` when unset."""
    text = optional(environ, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidSettingError(name, "must be a number of seconds") from None
    if not low <= value <= high:
        raise InvalidSettingError(name, f"must be between {low:g} and {high:g}")
    return value


def check_url(key: str, value: str) -> None:
    """Refuse, naming the setting, anything but an absolute http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSettingError(key, "must be an absolute http(s) URL")
