"""The Outlook change sources: one class per kind, so each event's ``kind`` is Graph's type name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from shared.clock import utcnow
from shared.errors import GraphRequestError, ResyncRequiredError
from shared.model.catalog import (
    IMMUTABLE_IDS,
    OUTLOOK_CONTACTS,
    OUTLOOK_EVENTS,
    OUTLOOK_FOLDER_MESSAGES,
    OUTLOOK_MAILBOX_MESSAGES,
)
from shared.model.changes import (
    NO_STATE,
    ChangeSource,
    NotifiedChange,
    Page,
    SourceChange,
    SourceState,
    StateWrite,
    Traits,
)
from shared.sources.outlook.folders import FOLDER, Folder, folder_row, parse_folder
from shared.sources.outlook.links import Position, decode, encode, outlook_change, window_around, window_stale

if TYPE_CHECKING:
    from shared.graph import GraphGateway

log = logging.getLogger(__name__)
# Outlook's delta pages hold at most this many items (Prefer: odata.maxpagesize).
PAGE_SIZE = 100
# Reads of moved-or-deleted messages in flight at once.
_CHECKS = 8


def _segment(value: str) -> str:
    return quote(value, safe="=")


class _OutlookSource:
    """What the Outlook kinds share: the Prefer header, page reading, and a silent first round."""

    kind = ""
    pattern = OUTLOOK_FOLDER_MESSAGES
    # Outlook has no 'latest' token: the first round records the position and reports nothing.
    traits = Traits(silent_baseline=True)

    def __init__(self, graph: GraphGateway, page_size: int = PAGE_SIZE) -> None:
        self._graph = graph
        # Immutable ids: a message moved to another folder keeps its id, so events name it stably.
        self._headers = {"Prefer": f"odata.maxpagesize={page_size}, {IMMUTABLE_IDS}"}

    def handles(self, resource: str) -> bool:
        """True for this kind's resources."""
        return self.pattern.match(resource.strip().strip("/")) is not None

    def notified(
        self, resource: str, notification: Mapping[str, Any], data: Mapping[str, Any]
    ) -> NotifiedChange | None:
        """A rich notification's item as this kind's delta reports it: in the mailbox's container, by changeKey."""
        change = outlook_change(dict(data))
        if change is None:
            return None
        if notification.get("changeType") == "deleted":
            change = SourceChange(change.item_id, None, None)
        return NotifiedChange(self._match(resource)["user"], change)

    def _match(self, resource: str) -> dict[str, str]:
        match = self.pattern.match(resource.strip().strip("/"))
        if match is None:
            raise GraphRequestError(f"not an Outlook {self.kind} resource: {resource!r}")
        return {k: v for k, v in match.groupdict().items() if v is not None}

    async def _get(self, url: str) -> dict[str, Any]:
        return await self._graph.fetch_url(url, headers=self._headers)

    def _url(self, path: str, query: dict[str, str] | None = None) -> str:
        url = f"{self._graph.base_url}/{path}"
        return f"{url}?{urlencode(query, quote_via=quote, safe='$')}" if query else url

    async def _read(self, url: str) -> tuple[list[SourceChange], str | None, str | None]:
        body = await self._get(url)
        changes = [c for item in body.get("value") or [] if (c := outlook_change(item)) is not None]
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if isinstance(next_link, str) and next_link:
            return changes, next_link, None
        if isinstance(delta_link, str) and delta_link:
            return changes, None, delta_link
        raise GraphRequestError("delta page has neither a nextLink nor a deltaLink")

    async def _collection(self, user: str, first: str, link: str | None, extra: Position | None = None) -> Page:
        """One page of a single collection's delta: at ``link``, or its first page."""
        position = decode(link) if link else (extra or Position())
        changes, next_link, delta_link = await self._read(position.link or first)
        if next_link is not None:
            return Page(user, changes, encode(replace(position, link=next_link, final=False)), None)
        return Page(user, changes, None, encode(replace(position, link=delta_link, final=True)))


class FolderMessageSource(_OutlookSource):
    """``users/{id}/mailFolders/{id}/messages``: that folder's message delta."""

    kind = "message"
    pattern = OUTLOOK_FOLDER_MESSAGES

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One page of the folder's message delta."""
        parts = self._match(resource)
        first = self._url(f"users/{_segment(parts['user'])}/mailFolders/{_segment(parts['folder'])}/messages/delta")
        return await self._collection(parts["user"], first, link)


class ContactSource(_OutlookSource):
    """``users/{id}/contacts`` (the default contacts folder) and ``users/{id}/contactFolders/{id}/contacts``."""

    kind = "contact"
    pattern = OUTLOOK_CONTACTS

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One page of the contact folder's delta."""
        parts = self._match(resource)
        user = _segment(parts["user"])
        folder = parts.get("folder")
        path = (
            f"users/{user}/contactFolders/{_segment(folder)}/contacts/delta"
            if folder
            else f"users/{user}/contacts/delta"
        )
        return await self._collection(parts["user"], self._url(path), link)


class EventSource(_OutlookSource):
    """``users/{id}/events`` and ``users/{id}/calendar/events``: calendarView delta over a window.

    The window (whole UTC days, CALENDAR_WINDOW_DAYS_PAST before today to
    CALENDAR_WINDOW_DAYS_AHEAD after) is fixed by a round's first request and
    carried by its links. Once a stored window starts more than a day behind, the
    next run re-bases: it enumerates the new window (a resync), so events that aged
    out of it are reported deleted. calendarView delta lists events outside its
    window that changed under ``@removed``; a removal of an event this app never
    reported is such an event: it is logged and ignored (``ignores_unknown_removals``).
    """

    kind = "event"
    pattern = OUTLOOK_EVENTS
    traits = Traits(silent_baseline=True, ignores_unknown_removals=True)

    def __init__(
        self,
        graph: GraphGateway,
        days_past: int = 30,
        days_ahead: int = 365,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(graph, page_size)
        self._days_past = days_past
        self._days_ahead = days_ahead
        self._clock = clock

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One page of calendarView delta; ResyncRequiredError when the stored window must move."""
        parts = self._match(resource)
        now = self._clock()
        if link is not None:
            position = decode(link)
            if position.final and window_stale(position.window, now, self._days_past):
                log.info("calendar window of %s moved on: re-basing with a resync", resource)
                raise ResyncRequiredError("the calendar window moved on", None)
            return await self._collection(parts["user"], "", link)
        start, end = window_around(now, self._days_past, self._days_ahead)
        first = self._url(
            f"users/{_segment(parts['user'])}/calendarView/delta", {"startDateTime": start, "endDateTime": end}
        )
        return await self._collection(parts["user"], first, None, Position(window=(start, end)))


class MailboxMessageSource(_OutlookSource):
    """``users/{id}/messages``: every folder of the mailbox, walked one folder after another.

    See the package docstring: a round starts with a page that lists the folders
    (its state writes add new folders and remove gone ones), then reads them in the
    order of their entries, each from its saved deltaLink (from scratch in an
    enumeration), and a ``@removed`` message that still exists (it moved to another
    folder) is not a deletion. Each folder's new deltaLink is a state write of the
    page that ends its round, so it is saved only once that page's changes are.
    """

    kind = "message"
    pattern = OUTLOOK_MAILBOX_MESSAGES

    async def page(self, resource: str, link: str | None, state: SourceState = NO_STATE) -> Page:
        """One page of the walk: at ``link``, or the first page of an enumeration of every folder."""
        user = self._match(resource)["user"]
        position = decode(link) if link else Position(full=True)
        if position.folder is None:
            return await self._start_round(user, position, state)
        value = await state.get(position.folder)
        if value is None:  # the folder left the mailbox since the round began: go on
            return await self._next_folder(user, position, position.folder, [], (), state)
        folder = parse_folder(position.folder, value)
        start = self._url(f"users/{_segment(user)}/mailFolders/{_segment(folder.folder_id)}/messages/delta")
        url = position.link or (None if position.full else folder.link) or start
        changes, next_link, delta_link = await self._read(url)
        changes = await self._confirm_removals(user, changes)
        if next_link is not None:
            return Page(user, changes, encode(replace(position, link=next_link)), None)
        return await self._next_folder(user, position, folder.row, changes, (folder.saved(delta_link),), state)

    async def _start_round(self, user: str, position: Position, state: SourceState) -> Page:
        """The round's first page: no changes, the folder list as state writes, and the first folder next."""
        listed = {folder_row(f): f for f in await self._list_folders(user)}
        present = {name async for name in state.names(FOLDER)}
        if not position.full and not present:
            # No saved positions (state lost, or written by an older version): only an enumeration
            # can tell what was deleted meanwhile.
            raise ResyncRequiredError("no saved folder positions for the mailbox", None)
        writes = [Folder(row, folder_id).saved(None) for row, folder_id in listed.items() if row not in present]
        writes += [StateWrite(name, None) for name in sorted(present - listed.keys())]
        if not listed:  # a mailbox with no folders
            return Page(user, [], None, encode(Position(final=True)), tuple(writes))
        first = min(listed)
        return Page(user, [], encode(Position(folder=first, full=position.full)), None, tuple(writes))

    async def _next_folder(
        self,
        user: str,
        position: Position,
        row: str,
        changes: list[SourceChange],
        writes: tuple[StateWrite, ...],
        state: SourceState,
    ) -> Page:
        following = await state.after(FOLDER, row)
        if following is None:
            # The round is over; its "deltaLink" starts the next round from each folder's saved link.
            return Page(user, changes, None, encode(Position(final=True)), writes)
        return Page(user, changes, encode(Position(folder=following[0], full=position.full)), None, writes)

    async def _list_folders(self, user: str) -> list[str]:
        """Every mail folder's id: the top-level folders, then their child folders, breadth first."""
        query = {"includeHiddenFolders": "true", "$select": "id,childFolderCount", "$top": "100"}
        found: list[str] = []
        pending = [self._url(f"users/{_segment(user)}/mailFolders", query)]
        while pending:
            url: str | None = pending.pop(0)
            while url:
                body = await self._get(url)
                for folder in body.get("value") or []:
                    if not isinstance(folder, dict) or not isinstance(folder.get("id"), str):
                        continue
                    found.append(folder["id"])
                    if folder.get("childFolderCount"):
                        child = f"users/{_segment(user)}/mailFolders/{_segment(folder['id'])}/childFolders"
                        pending.append(self._url(child, query))
                link = body.get("@odata.nextLink")
                url = link if isinstance(link, str) and link else None
        return found

    async def _confirm_removals(self, user: str, changes: list[SourceChange]) -> list[SourceChange]:
        """Drop the removals of messages that still exist: they moved to another folder."""
        removed = [c.item_id for c in changes if c.version is None]
        if not removed:
            return changes
        gate = asyncio.Semaphore(_CHECKS)

        async def exists(message_id: str) -> bool:
            url = self._url(f"users/{_segment(user)}/messages/{_segment(message_id)}", {"$select": "id"})
            async with gate:
                try:
                    await self._get(url)
                except GraphRequestError as exc:
                    if exc.graph_status == 404:
                        return False
                    raise
            return True

        alive = {i for i, live in zip(removed, await asyncio.gather(*map(exists, removed)), strict=True) if live}
        return [c for c in changes if not (c.version is None and c.item_id in alive)]


def outlook_sources(graph: GraphGateway, days_past: int, days_ahead: int) -> list[ChangeSource]:
    """The Outlook sources, for the registry."""
    return [
        FolderMessageSource(graph),
        MailboxMessageSource(graph),
        EventSource(graph, days_past, days_ahead),
        ContactSource(graph),
    ]
