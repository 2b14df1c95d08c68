"""JSON shapes of drives and driveItems, as OneDrive for Business returns them."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from ..clock import item_time
from ..models.drive_store import DriveStore
from ..models.drives import Drive, Item, item_hash

WEB_BASE = "https://contoso.sharepoint.com"


def drive_json(drive: Drive, graph_url: str) -> dict[str, Any]:
    """A drive resource."""
    owner: dict[str, Any]
    if drive.user_id:
        owner = {"user": {"id": drive.user_id, "displayName": drive.user_id}}
    else:
        owner = {"group": {"id": drive.site_id or drive.id, "displayName": "Site owners"}}
    web = (
        f"{WEB_BASE}/personal/{drive.user_id}/Documents"
        if drive.user_id
        else f"{WEB_BASE}/sites/{drive.site_id or 'root'}/Shared%20Documents"
    )
    body: dict[str, Any] = {
        "@odata.context": f"{graph_url}/$metadata#drives/$entity",
        "createdDateTime": item_time(drive.created),
        "description": "",
        "id": drive.id,
        "lastModifiedDateTime": item_time(drive.created),
        "name": "Documents",
        "webUrl": web,
        "driveType": "business",
        "createdBy": {"user": {"displayName": "System Account"}},
        "owner": owner,
        "quota": {"deleted": 0, "remaining": 1099511627776, "state": "normal", "total": 1099511627776, "used": 0},
    }
    return body


# A path segment's characters that stay as they are (RFC 3986 pchar): spaces, '%', '#', '?' and
# non-ASCII letters are percent-encoded.
_PATH_SAFE = "!$&'()*+,;=:@"


def encoded_path(path: str) -> str:
    """``/drive/root:/My Folder`` as Graph gives it in ``parentReference.path``: ``/drive/root:/My%20Folder``.

    itemReference.path is the "Percent-encoded path that can be used to navigate to the item",
    e.g. ``/drive/root:/Documents/my%20file.docx`` (GD api-reference/v1.0/resources/itemreference.md).
    Delta leaves ``path`` out altogether (GD api-reference/v1.0/api/driveitem-delta.md, Remarks).
    """
    prefix, colon, names = path.partition(":")
    return prefix + colon + "/".join(quote(name, safe=_PATH_SAFE) for name in names.split("/"))


def _parent_ref(store: DriveStore, drive: Drive, item: Item, with_path: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"driveType": "business", "driveId": drive.id}
    if item.parent_id is None:
        return ref
    ref["id"] = item.parent_id
    if drive.site_id:
        ref["siteId"] = drive.site_id
    if with_path:
        ref["path"] = encoded_path(drive.path_of(item))
    return ref


def item_json(store: DriveStore, drive: Drive, item: Item, *, in_delta: bool = False) -> dict[str, Any]:
    """A driveItem; ``in_delta`` applies delta's omissions (no cTag, no path; tombstones)."""
    tag = f"{{{item.guid}}}"
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.driveItem",
        "createdDateTime": item_time(item.created),
        "eTag": f'"{tag},{item.version}"',
        "id": item.id,
        "lastModifiedDateTime": item_time(item.modified),
        "name": item.name,
        "parentReference": _parent_ref(store, drive, item, with_path=not in_delta),
        "fileSystemInfo": {
            "createdDateTime": item_time(item.created),
            "lastModifiedDateTime": item_time(item.modified),
        },
    }
    if item.deleted:
        # OneDrive for Business omits name and cTag on deleted items in delta.
        del body["name"]
        body["deleted"] = {"state": "deleted"}
        body["file" if not item.is_folder else "folder"] = {}
        return body
    if not in_delta:
        body["cTag"] = f'"c:{tag},{item.content_version}"'
    if item.parent_id is None:
        body["webUrl"] = f"{WEB_BASE}/Shared%20Documents"
        body["root"] = {}
    else:
        path = drive.path_of(item).removeprefix("/drive/root:")
        body["webUrl"] = f"{WEB_BASE}/Shared%20Documents{quote(path)}/{quote(item.name)}"
    # Counters kept up to date by the store: rendering a folder never scans the drive.
    # A folder's size is the total of its live content, at any depth, as OneDrive reports.
    if item.is_folder:
        body["folder"] = {"childCount": item.child_count}
    else:
        mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
        body["file"] = {"mimeType": mime, "hashes": {"quickXorHash": item_hash(item)}}
    body["size"] = item.size
    return body
