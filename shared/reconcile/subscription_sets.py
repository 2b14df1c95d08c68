"""Subscription sets: a GRAPH_SUBSCRIPTIONS entry with ``forEachMemberOf`` stands for one
subscription per member of a group.

The expansion is pure (entries and member ids in, concrete subscriptions out);
reconciliation then creates a subscription for a member who joined and deletes
the one of a member who left, within Graph's write budget like any other. The
membership is followed with groups delta filtered to the group
(``$filter=id eq '{id}'&$select=members``): the first refresh enumerates it, each
later one (one call per renew tick) reads only the ``members@delta`` since the
stored link, so no full listing happens per tick. Only user members count: the
placeholder stands for a user id. Nested groups are not expanded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from shared.errors import GraphRequestError, ResyncRequiredError
from shared.model.resources import MEMBER_PLACEHOLDER, DesiredSubscription
from shared.model.tenant import scoped_key
from shared.sources.delta import GraphReader
from shared.stores.members import MemberSet

USER_TYPE = "#microsoft.graph.user"
# A broken server could otherwise page forever.
MAX_PAGES = 100_000


def expand(
    desired: Sequence[DesiredSubscription], members: Mapping[str, Collection[str]]
) -> tuple[DesiredSubscription, ...]:
    """Replace each set entry by one subscription per member of its group (others pass through).

    Raises KeyError for a set whose group has no member list: an unknown membership
    must never read as an empty one, which would delete the whole set.
    """
    expanded: dict[str, DesiredSubscription] = {}
    for entry in desired:
        if entry.for_each_member_of is None:
            expanded.setdefault(entry.key, entry)
            continue
        for member in sorted(members[entry.for_each_member_of]):
            one = DesiredSubscription(
                entry.resource.replace(MEMBER_PLACEHOLDER, member),
                entry.change_type,
                entry.include_resource_data,
                query=entry.query,
                tenant=entry.tenant,
                delivery=entry.delivery,
            )
            expanded.setdefault(one.key, one)
    return tuple(expanded.values())


def groups_of(desired: Iterable[DesiredSubscription]) -> list[str]:
    """The groups that set entries expand over, each once, in order."""
    return list(dict.fromkeys(d.for_each_member_of for d in desired if d.for_each_member_of))


def apply_members_delta(members: frozenset[str], group_id: str, objects: Iterable[Any]) -> frozenset[str]:
    """The membership after one groups-delta page: users added, and those with ``@removed`` dropped.

    Graph may spread one group's members@delta over several objects and pages;
    a removed group empties the set.
    """
    current = set(members)
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("id") != group_id:
            continue
        if "@removed" in obj:
            current.clear()
            continue
        for member in obj.get("members@delta") or []:
            if not isinstance(member, dict) or not isinstance(member.get("id"), str):
                continue
            kind = member.get("@odata.type")
            if kind is not None and str(kind).lower() != USER_TYPE:
                continue
            if "@removed" in member:
                current.discard(member["id"])
            else:
                current.add(member["id"])
    return frozenset(current)


def first_query(group_id: str) -> dict[str, str]:
    """The groups-delta query that enumerates one group's members."""
    quoted = group_id.replace("'", "''")  # an OData string literal
    return {"$filter": f"id eq '{quoted}'", "$select": "members"}


class MemberStoreLike(Protocol):
    """Where memberships and their delta links are kept (stores.members.MemberStore)."""

    async def load(self, group_id: str) -> MemberSet: ...

    async def save(self, group_id: str, before: MemberSet, after: MemberSet) -> None: ...


class SubscriptionSets:
    """Expands set entries with each group's membership, refreshed by groups delta."""

    def __init__(self, graph: GraphReader, store: MemberStoreLike, tenant: str = "") -> None:
        self._graph = graph
        self._store = store
        # A multi-tenant deployment keeps each tenant's memberships under its own keys.
        self._tenant = tenant

    async def expand(self, desired: Sequence[DesiredSubscription]) -> tuple[DesiredSubscription, ...]:
        """``desired`` with every set entry replaced by its members' subscriptions.

        A group whose refresh fails raises: reconciliation then stops for this tick
        rather than deleting the set's subscriptions.
        """
        groups = groups_of(desired)
        if not groups:
            return tuple(desired)
        members = {group: await self.refresh(group) for group in groups}
        return expand(desired, members)

    async def refresh(self, group_id: str) -> frozenset[str]:
        """Bring the stored membership of ``group_id`` up to date and return it."""
        stored = await self._store.load(scoped_key(self._tenant, group_id))
        try:
            current, link = await self._follow(group_id, stored)
        except ResyncRequiredError:
            # The link expired: enumerate the membership again, replacing the stored one.
            current, link = await self._follow(group_id, MemberSet())
        await self._store.save(scoped_key(self._tenant, group_id), stored, MemberSet(current, link))
        return current

    async def _follow(self, group_id: str, start: MemberSet) -> tuple[frozenset[str], str]:
        members = start.members
        if start.delta_link:
            body = await self._fetch(start.delta_link)
        else:
            body = await self._graph.fetch_path("groups/delta", first_query(group_id))
        for _ in range(MAX_PAGES):
            members = apply_members_delta(members, group_id, body.get("value") or [])
            next_link = body.get("@odata.nextLink")
            delta_link = body.get("@odata.deltaLink")
            if isinstance(next_link, str) and next_link:
                body = await self._fetch(next_link)
                continue
            if isinstance(delta_link, str) and delta_link:
                return members, delta_link
            raise GraphRequestError("groups delta page has neither a nextLink nor a deltaLink")
        raise GraphRequestError(f"groups delta exceeded {MAX_PAGES} pages")

    async def _fetch(self, url: str) -> dict[str, Any]:
        try:
            return await self._graph.fetch_url(url)
        except ResyncRequiredError:
            raise
        except GraphRequestError as exc:
            if "syncstatenotfound" in (exc.code.lower() + str(exc).lower()):
                raise ResyncRequiredError("groups delta token expired", None) from exc
            raise
