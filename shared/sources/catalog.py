"""Which subscription resources this app can read, and the change types Graph accepts for them (pure).

Settings check GRAPH_SUBSCRIPTIONS against this list without importing any SDK;
the change sources match resources with the same patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# drives/{id}/root, users/{id}/drive/root, groups/{id}/drive/root, sites/{id}/drive/root.
DRIVE_ROOT = re.compile(r"^(?:drives/(?P<drive>[^/]+)|(?P<owner>users|groups|sites)/(?P<owner_id>[^/]+)/drive)/root$")


@dataclass(frozen=True)
class ReadableResource:
    """A resource pattern some change source reads, and the change types Graph allows on it."""

    name: str
    pattern: re.Pattern[str]
    change_types: frozenset[str]
    # The least-privileged application permission that reads it (the README lists them).
    permission: str = ""
    # Whether Graph can include resource data (rich notifications) for it.
    resource_data: bool = False


# One entry per kind a change source reads; each kind's module adds its own entry here.
READABLE: tuple[ReadableResource, ...] = (
    # Graph accepts only 'updated' on drive roots (subscription resource documentation).
    ReadableResource("drive root", DRIVE_ROOT, frozenset({"updated"}), "Files.Read.All"),
)


def readable_kind(resource: str) -> ReadableResource | None:
    """The readable resource kind ``resource`` belongs to, or None when no source reads it."""
    path = resource.strip().strip("/")
    for kind in READABLE:
        if kind.pattern.match(path):
            return kind
    return None


def readable(resource: str) -> bool:
    """True when some change source reads ``resource``."""
    return readable_kind(resource) is not None
