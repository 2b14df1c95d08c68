"""Blob names for the mirror: an item's path, decoded once, that never leaves its drive's prefix.

Graph gives ``parentReference.path`` percent-encoded ("Percent-encoded path that can be used
to navigate to the item", e.g. ``/drive/root:/Documents/my%20file.docx``: the itemReference
resource) and everything up to the first ``:`` can be ignored; an item's ``name`` comes
decoded. So each path segment is decoded exactly once, and the name is used as it is.

A segment that could move a name out of its drive's prefix is refused, never cleaned up:
empty, ``.`` or ``..``, holding a ``/`` or ``\\`` (Blob storage reads a backslash as a
slash), a control character, or bytes that are not UTF-8. The storage client and the HTTP
stack normalise dot segments, and a credential that does not sign the path (a managed
identity) would then write into another container.

What Blob storage cannot hold ("Naming and Referencing Containers, Blobs, and Metadata")
is mapped or refused, the same way every time:
- a segment ending with a dot (the service drops a trailing dot): its final dots are
  written ``%2E``; ``%`` itself is written ``%25``, so the mapping is one-to-one and
  ``unquote`` of a segment gives the item's real name back;
- code points Blob storage does not take (private use, like ``\\uE000``, and noncharacters):
  written as their UTF-8 percent-encoding;
- more than 1,024 characters, or more than 254 segments: refused. The limits keep room
  for the ``deleted/`` prefix that ``onDelete: move`` adds.
A refusal is a DeliveryRejectedError: the event goes to the poison queue at once. Its
message names the rule, never the item's name.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote, unquote

from shared.errors import DeliveryRejectedError

DELETED_PREFIX = "deleted/"
# Blob storage's limits, less what the deleted/ prefix adds.
MAX_LENGTH = 1024 - len(DELETED_PREFIX)
MAX_SEGMENTS = 254 - 1


def tenant_root(tenant: str) -> str:
    """What every blob name of a tenant begins with: ``{tenant-id}/``."""
    return f"{_checked(tenant, 'the tenant id')}/"


def drive_root(drive_id: str, tenant: str = "") -> str:
    """Where a drive's blobs live: ``{drive-id}``, or ``{tenant-id}/{drive-id}`` for a tenant's drive."""
    root = _checked(drive_id, "the drive id")
    return tenant_root(tenant) + root if tenant else root


def blob_name(drive_id: str, item: dict[str, Any], tenant: str = "") -> str:
    """``{drive-id}/{path}/{name}`` (under ``{tenant-id}/`` for a tenant's drive) from a GET of the item.

    DeliveryRejectedError if it cannot be one.
    """
    parent = str((item.get("parentReference") or {}).get("path") or "")
    _, colon, folder = parent.partition(":")
    segments = [_decoded(segment) for segment in _split(folder if colon else "")]
    name = str(item.get("name", ""))
    parts = [drive_root(drive_id, tenant)]
    parts += [_stored(_checked(segment, "a folder in the path")) for segment in segments]
    parts.append(_stored(_checked(name, "the item's name")))
    return checked_blob("/".join(parts))


def checked_blob(name: str) -> str:
    """``name`` if it is a blob name the mirror may touch: inside a prefix, within the limits."""
    segments = name.split("/")
    for segment in segments:
        _checked(segment, "a blob name segment")
    moved = name.startswith(DELETED_PREFIX)  # the onDelete: move copy, which the limits leave room for
    most = MAX_SEGMENTS + (1 if moved else 0)
    if len(segments) > most:
        raise DeliveryRejectedError(f"the blob name has {len(segments)} segments; at most {most} fit")
    length = len(name.encode("utf-16-le")) // 2  # characters as the service counts them (UTF-16)
    most = MAX_LENGTH + (len(DELETED_PREFIX) if moved else 0)
    if length > most:
        raise DeliveryRejectedError(f"the blob name has {length} characters; at most {most} fit")
    return name


def _split(folder: str) -> list[str]:
    """The segments of ``/a/b`` (none for the root, ``""`` or ``/``); an empty one is kept, to be refused."""
    if folder in ("", "/"):
        return []
    return folder.removeprefix("/").split("/")


def _decoded(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise DeliveryRejectedError("a folder in the path is not UTF-8 once decoded") from None


def _checked(segment: str, what: str) -> str:
    """``segment`` if it stays one segment inside its prefix; DeliveryRejectedError why not."""
    if not segment:
        raise DeliveryRejectedError(f"{what} is empty")
    if segment in (".", ".."):
        raise DeliveryRejectedError(f"{what} is {segment!r}, which would leave the drive's prefix")
    if "/" in segment or "\\" in segment:
        raise DeliveryRejectedError(f"{what} holds a slash or a backslash")
    for char in segment:
        category = unicodedata.category(char)
        if category == "Cc":
            raise DeliveryRejectedError(f"{what} holds the control character U+{ord(char):04X}")
        if category == "Cs":
            raise DeliveryRejectedError(f"{what} holds a lone surrogate U+{ord(char):04X}")
    return segment


def _stored(segment: str) -> str:
    """The segment as Blob storage can keep it: ``%``, code points it refuses and final dots escaped."""
    text = "".join(_escaped(char) for char in segment)
    body = text.rstrip(".")
    return body + "%2E" * (len(text) - len(body))


def _escaped(char: str) -> str:
    code = ord(char)
    noncharacter = 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE
    if char == "%" or noncharacter or unicodedata.category(char) == "Co":
        return quote(char, safe="")
    return char
