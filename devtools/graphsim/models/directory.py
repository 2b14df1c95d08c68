"""Users and groups, group membership, and their change notifications.

Every change takes the collection's next sequence number (delta walks the objects changed
since a token: routes/directory.py); a deleted object stays with ``deleted`` set, and a
group keeps, per member, the sequence of its last membership change. Subscriptions on
``users`` and ``groups`` accept ``updated`` and ``deleted``; notifications carry
resourceData with the object's id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..clock import graph_time
from .subscriptions import RESOURCE_RULES, Listener, ResourceRule

DIRECTORY_MAX_MINUTES = 41760
ODATA_TYPE = {"users": "#microsoft.graph.user", "groups": "#microsoft.graph.group"}
# What a notification's resourceData names (Graph capitalises these).
NOTIFY_TYPE = {"users": ("Users", "#Microsoft.Graph.User"), "groups": ("Groups", "#Microsoft.Graph.Group")}


@dataclass
class DirObject:
    """A user or group; a group keeps a log of its membership changes."""

    id: str
    props: dict[str, Any]
    seq: int = 0
    deleted: bool = False
    # member id -> (sequence of the last change, still a member)
    members: dict[str, tuple[int, bool]] = field(default_factory=dict)


@dataclass
class Collection:
    """users or groups: objects in sequence order, and the epoch that stales tokens."""

    name: str
    objects: dict[str, DirObject] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0
    delta_runs: int = 0  # runs started: enumerations, latest, and deltaLinks followed
    delta_requests: int = 0  # every delta page served
    enumerations: int = 0  # full enumerations started (no token)


class Directory:
    """The tenant's users and groups."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.collections = {"users": Collection("users"), "groups": Collection("groups")}
        self.listeners: list[Listener] = []
        self._now = now or (lambda: datetime.now(UTC))

    def _stamp(self, coll: Collection, obj: DirObject, change_type: str) -> None:
        coll.seq += 1
        obj.seq = coll.seq
        coll.objects.pop(obj.id, None)
        coll.objects[obj.id] = obj
        path, odata = NOTIFY_TYPE[coll.name]
        extra = {
            "resource": f"{path}/{obj.id}",
            "resourceData": {"@odata.type": odata, "@odata.id": f"{path}/{obj.id}", "id": obj.id},
        }
        for listener in self.listeners:
            listener(coll.name, [(change_type, extra)])

    def get(self, collection: str, object_id: str) -> DirObject | None:
        """A live user or group."""
        obj = self.collections[collection].objects.get(object_id)
        return None if obj is None or obj.deleted else obj

    def add(self, collection: str, props: dict[str, Any], object_id: str | None = None) -> DirObject:
        """A new user or group."""
        # createdDateTime: a property of user and group resources, returned when selected.
        obj = DirObject(object_id or str(uuid.uuid4()), {"createdDateTime": graph_time(self._now()), **props})
        self._stamp(self.collections[collection], obj, "updated")
        return obj

    def update(self, collection: str, obj: DirObject, props: dict[str, Any]) -> None:
        """Change some properties."""
        obj.props.update(props)
        self._stamp(self.collections[collection], obj, "updated")

    def delete(self, collection: str, obj: DirObject) -> None:
        """Delete a user or group; a deleted user also leaves every group."""
        obj.deleted = True
        self._stamp(self.collections[collection], obj, "deleted")
        if collection == "users":
            for group in list(self.collections["groups"].objects.values()):
                if not group.deleted and group.members.get(obj.id, (0, False))[1]:
                    self.set_member(group, obj.id, False)

    def restore(self, collection: str, object_id: str) -> DirObject | None:
        """Restore a deleted user or group (directory/deletedItems/{id}/restore); None when none is deleted."""
        obj = self.collections[collection].objects.get(object_id)
        if obj is None or not obj.deleted:
            return None
        obj.deleted = False
        self._stamp(self.collections[collection], obj, "updated")
        return obj

    def set_member(self, group: DirObject, user_id: str, present: bool) -> None:
        """Add a member to a group, or remove one: the group changes."""
        groups = self.collections["groups"]
        group.members[user_id] = (groups.seq + 1, present)
        self._stamp(groups, group, "updated")

    def generate_users(self, count: int, prefix: str) -> list[str]:
        """``count`` users at once, without notifications (a large tenant)."""
        users = self.collections["users"]
        ids = []
        for n in range(count):
            users.seq += 1
            props = {"displayName": f"{prefix} {n}", "createdDateTime": graph_time(self._now())}
            obj = DirObject(str(uuid.uuid4()), props, users.seq)
            users.objects[obj.id] = obj
            ids.append(obj.id)
        return ids


def render(coll: Collection, obj: DirObject, select: set[str] | None, after: int | None) -> dict[str, Any]:
    """A delta object: removed, or its selected properties and (groups) members@delta since ``after``."""
    if obj.deleted:
        return {"@odata.type": ODATA_TYPE[coll.name], "id": obj.id, "@removed": {"reason": "changed"}}
    body: dict[str, Any] = {"@odata.type": ODATA_TYPE[coll.name], "id": obj.id}
    for key, value in obj.props.items():
        if select is None or key in select:
            body[key] = value
    if coll.name == "groups" and (select is None or "members" in select):
        changes = []
        for member, (seq, present) in obj.members.items():
            if after is None and not present:
                continue  # an enumeration lists current members only
            if after is not None and seq <= after:
                continue
            entry: dict[str, Any] = {"@odata.type": "#microsoft.graph.user", "id": member}
            if not present:
                entry["@removed"] = {"reason": "deleted"}
            changes.append(entry)
        if changes:
            body["members@delta"] = changes
    return body


for _name in ("users", "groups"):
    RESOURCE_RULES.append(
        ResourceRule(
            re.compile(rf"^/?{_name}/?$", re.IGNORECASE),
            frozenset({"updated", "deleted"}),
            DIRECTORY_MAX_MINUTES,
            _name,
            lambda state, resource: True,
        )
    )
