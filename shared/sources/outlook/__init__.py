"""Outlook messages, events and contacts as change sources, read by Outlook's delta queries.

Resources and the delta each is read with (all app-only, ``users/{id}/...``):

- ``mailFolders/{id}/messages``: that folder's ``messages/delta``;
- ``messages`` (every folder): a walk over the mailbox's folders, each with its own
  ``messages/delta`` (Graph's delta is per folder, delta-query-messages.md);
- ``events`` or ``calendar/events``: ``calendarView/delta`` over a window around now
  (CALENDAR_WINDOW_DAYS_PAST, CALENDAR_WINDOW_DAYS_AHEAD);
- ``contacts`` (the default contacts folder) and ``contactFolders/{id}/contacts``:
  ``contacts/delta`` of that folder.

Items returned with ``@removed`` are deletions. Every request asks for immutable ids
(``Prefer: IdType="ImmutableId"``), so a message keeps its id when it moves folder
and a change event's ``itemId`` is stable. Outlook has no ``latest`` token: a new
subscription's first round reads everything and emits nothing (``silent_baseline``).

The links the synchronizer stores are this package's own (see ``links``): a Graph
link wrapped with what the next page needs, e.g. the calendar window or the folder
a walk is in. **The all-folder walk** keeps one deltaLink per folder in its source
state (``folders``; the synchronizer commits it with the cursor), because a mailbox
can have hundreds of folders and a cursor property holds at most 64 KiB: a round
lists the folders (``mailFolders`` and their ``childFolders``), then reads them one
after another, each from its saved deltaLink; the page that ends a folder's round
carries its new deltaLink as a state write, saved only once that page's changes
are stored. The cursor names only the folder in progress and its page, and the
round's final "deltaLink" is a small token that starts the next round. A message moved between
folders is reported by its new folder; the old folder's ``@removed`` is checked
with one read of the message and dropped when the message still exists.
"""

from __future__ import annotations

from shared.sources.outlook.sources import (
    ContactSource,
    EventSource,
    FolderMessageSource,
    MailboxMessageSource,
    outlook_sources,
)

__all__ = [
    "ContactSource",
    "EventSource",
    "FolderMessageSource",
    "MailboxMessageSource",
    "outlook_sources",
]
