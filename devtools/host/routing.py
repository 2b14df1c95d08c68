"""Route templates and query strings, matched and decoded as ASP.NET Core does (pure)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

_PARAM = re.compile(
    r"^\{(?P<star>\*{1,2})?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?P<constraints>(?::[^:?=}]+(?:\([^)]*\))?)*)"
    r"(?P<opt>\?)?(?:=(?P<default>[^}]*))?\}$"
)
_CONSTRAINT = re.compile(r":([A-Za-z]+)(?:\(([^)]*)\))?")


class RouteTemplateError(ValueError):
    """A route template this host cannot parse."""


def _is_number(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _int_in(lo: int, hi: int) -> Callable[[str], bool]:
    return lambda v: re.fullmatch(r"-?\d+", v) is not None and lo <= int(v) <= hi


def _constraint(name: str, arg: str | None) -> Callable[[str], bool]:
    """A check for one route constraint (`int`, `guid`, `min(1)`, `regex(...)`, ...)."""
    name = name.lower()
    a = arg or ""
    checks: dict[str, Callable[[str], bool]] = {
        "int": _int_in(-(2**31), 2**31 - 1),
        "long": _int_in(-(2**63), 2**63 - 1),
        "bool": lambda v: v.lower() in ("true", "false"),
        "guid": lambda v: _is_guid(v),
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "double": lambda v: _is_number(v, float),
        "float": lambda v: _is_number(v, float),
        "decimal": lambda v: _is_number(v, float),
    }
    if name in checks:
        return checks[name]
    if name == "min":
        return lambda v: _int_in(-(2**63), 2**63)(v) and int(v) >= int(a)
    if name == "max":
        return lambda v: _int_in(-(2**63), 2**63)(v) and int(v) <= int(a)
    if name == "range":
        lo, hi = (int(x) for x in a.split(","))
        return lambda v: _int_in(lo, hi)(v)
    if name == "minlength":
        return lambda v: len(v) >= int(a)
    if name == "maxlength":
        return lambda v: len(v) <= int(a)
    if name == "length":
        parts = [int(x) for x in a.split(",")]
        lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return lambda v: lo <= len(v) <= hi
    if name == "regex":
        pattern = re.compile(a, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    raise RouteTemplateError(f"unsupported route constraint {name!r}")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Segment:
    """One path segment of a template: a literal, or a parameter."""

    literal: str | None = None
    name: str | None = None
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()

    def rank(self) -> int:
        # Lower ranks win, as ASP.NET orders routes: literal, constrained, plain, catch-all.
        if self.literal is not None:
            return 1
        if self.catch_all:
            return 5
        return 2 if self.checks else 3


@dataclass(frozen=True)
class Route:
    """A compiled route template."""

    template: str
    segments: tuple[Segment, ...]

    def precedence(self) -> tuple[int, ...]:
        """Sort key: more specific templates first."""
        return (*(s.rank() for s in self.segments), 9)

    def match(self, path: str) -> dict[str, str] | None:
        """Match a raw (still percent-encoded) path below the route prefix; return route values."""
        parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg.catch_all:
                rest = "/".join(parts[i:])
                if rest:
                    values[seg.name or ""] = unquote(rest)
                elif seg.default is not None:
                    values[seg.name or ""] = seg.default
                return values
            if i >= len(parts):
                if seg.literal is not None:
                    return None
                if seg.default is not None:
                    values[seg.name or ""] = seg.default
                elif not seg.optional:
                    return None
                continue
            raw = unquote(parts[i])
            if seg.literal is not None:
                if raw.lower() != seg.literal.lower():
                    return None
                continue
            if raw == "" or not all(check(raw) for check in seg.checks):
                return None
            values[seg.name or ""] = raw
        if len(parts) > len(self.segments):
            return None
        return values


def compile_route(template: str) -> Route:
    """Compile a route template such as `items/{id:int}/{name?}` or `files/{*path}`."""
    text = template.strip().strip("/")
    if text.startswith("~"):
        text = text[1:].strip("/")
    segments: list[Segment] = []
    for part in text.split("/") if text else []:
        if "{" not in part:
            segments.append(Segment(literal=part))
            continue
        m = _PARAM.match(part)
        if not m:
            raise RouteTemplateError(f"unsupported route segment {part!r} in {template!r} (one parameter per segment)")
        checks = tuple(_constraint(c.group(1), c.group(2)) for c in _CONSTRAINT.finditer(m.group("constraints") or ""))
        segments.append(
            Segment(
                name=m.group("name"),
                optional=bool(m.group("opt")),
                catch_all=bool(m.group("star")),
                default=m.group("default"),
                checks=checks,
            )
        )
    return Route(template=template, segments=tuple(segments))


def parse_query(query: str) -> dict[str, str]:
    """Decode a raw query string into the single-valued map the Python worker receives.

    ASP.NET: `+` is a space, percent escapes are UTF-8, keys are case-insensitive (the
    first spelling is kept), repeated keys are joined with commas, and keys whose value
    is empty are dropped (the host does not forward empty values to the worker).
    """
    merged: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for pair in query.lstrip("?").split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key = unquote_plus(key).strip()
        if not key:
            continue
        folded = key.lower()
        spelling.setdefault(folded, key)
        merged.setdefault(folded, []).append(unquote_plus(value))
    result: dict[str, str] = {}
    for folded, values in merged.items():
        joined = ",".join(values)
        if joined:
            result[spelling[folded]] = joined
    return result
