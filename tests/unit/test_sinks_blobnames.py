"""Blob names from driveItems: decoded once, kept in the drive's prefix, storable or refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from shared.errors import DeliveryRejectedError
from shared.sinks.blobnames import DELETED_PREFIX, MAX_LENGTH, blob_name, checked_blob, drive_root, tenant_root

DRIVE = "b!drive"


def item(path: str | None, name: str) -> dict[str, Any]:
    return {"name": name, "parentReference": {"driveId": DRIVE, **({"path": path} if path is not None else {})}}


@pytest.mark.parametrize(
    ("path", "name", "expected"),
    [
        # itemReference: "The path value is a percent-encoded API path ... /drive/root:/Documents/my%20file.docx".
        ("/drive/root:/Documents", "my file.docx", f"{DRIVE}/Documents/my file.docx"),
        ("/drive/root:/My%20Folder/Sub%20Folder", "a b.txt", f"{DRIVE}/My Folder/Sub Folder/a b.txt"),
        ("/drives/b!drive/root:/Caf%C3%A9", "menu.pdf", f"{DRIVE}/Café/menu.pdf"),
        ("/drive/root:", "top.txt", f"{DRIVE}/top.txt"),
        ("/drive/root:/", "top.txt", f"{DRIVE}/top.txt"),
        (None, "top.txt", f"{DRIVE}/top.txt"),
        # Decoded once: a literal %25 in the path is the name's %, kept one-to-one as %25.
        ("/drive/root:/100%25", "50%.txt", f"{DRIVE}/100%25/50%25.txt"),
        # Blob storage drops a trailing dot: it is written %2E.
        ("/drive/root:/v1.", "report.", f"{DRIVE}/v1%2E/report%2E"),
        ("/drive/root:/a", "x..", f"{DRIVE}/a/x%2E%2E"),
        # A private-use code point (like \\uE000) is not a valid blob character: percent-encoded.
        ("/drive/root:/a", "\ue000.txt", f"{DRIVE}/a/%EE%80%80.txt"),
    ],
)
def test_names_are_decoded_once_and_storable(path: str | None, name: str, expected: str) -> None:
    stored = blob_name(DRIVE, item(path, name))
    assert stored == expected
    assert unquote(stored.rsplit("/", 1)[1]) == name  # the mapping gives the real name back


@pytest.mark.parametrize(
    ("path", "name", "reason"),
    [
        ("/drive/root:/a/../../other", "x", "'..'"),
        ("/drive/root:/a/%2E%2E/other", "x", "'..'"),
        ("/drive/root:/./a", "x", "'.'"),
        ("/drive/root:/a%2Fb", "x", "slash"),
        ("/drive/root:/a%5Cb", "x", "slash"),
        ("/drive/root:/a\\b", "x", "slash"),
        ("/drive/root:/a//b", "x", "empty"),
        ("/drive/root:/a", "..", "'..'"),
        ("/drive/root:/a", "..\\x", "slash"),
        ("/drive/root:/a", "", "empty"),
        ("/drive/root:/a", "tab\there", "control character U+0009"),
        ("/drive/root:/a%0Ab", "x", "control character U+000A"),
        ("/drive/root:/a", "x\u0085", "control character U+0085"),
        ("/drive/root:/a", "x\ud800", "surrogate"),
        ("/drive/root:/%FF", "x", "not UTF-8"),
        ("/drive/root:/" + "/".join(["d"] * 253), "x", "segments"),
        ("/drive/root:/a", "n" * MAX_LENGTH, "characters"),
    ],
)
def test_unsafe_or_unstorable_names_are_refused_without_echoing_them(path: str, name: str, reason: str) -> None:
    with pytest.raises(DeliveryRejectedError) as info:
        blob_name(DRIVE, item(path, name))
    assert reason in str(info.value)
    assert "tab" not in str(info.value) and "nnnn" not in str(info.value)


def test_the_drive_id_is_a_single_safe_segment() -> None:
    with pytest.raises(DeliveryRejectedError):
        blob_name("..", item("/drive/root:/a", "x"))
    with pytest.raises(DeliveryRejectedError):
        blob_name("b!a/../other", item("/drive/root:/a", "x"))


def test_stored_names_are_checked_again_before_use_and_the_deleted_copy_fits() -> None:
    longest = f"{DRIVE}/" + "n" * (MAX_LENGTH - len(DRIVE) - 1)
    assert checked_blob(longest) == longest
    assert checked_blob(DELETED_PREFIX + longest) == DELETED_PREFIX + longest
    with pytest.raises(DeliveryRejectedError):
        checked_blob(longest + "n")
    with pytest.raises(DeliveryRejectedError):
        checked_blob(f"{DRIVE}/a/../../other/x")  # an old row or a listing cannot take the mirror out either


def test_a_tenants_drive_lives_under_the_tenants_prefix() -> None:
    tenant = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
    assert blob_name(DRIVE, item("/drive/root:/Documents", "a.txt"), tenant) == f"{tenant}/{DRIVE}/Documents/a.txt"
    assert drive_root(DRIVE, tenant) == f"{tenant}/{DRIVE}" and tenant_root(tenant) == f"{tenant}/"
    assert drive_root(DRIVE) == DRIVE  # a single-tenant deployment's names are unchanged


@pytest.mark.parametrize("tenant", ["..", ".", "a/b", "a\\b", "t\x00"])
def test_the_tenant_id_is_a_single_safe_segment(tenant: str) -> None:
    with pytest.raises(DeliveryRejectedError, match="the tenant id"):
        blob_name(DRIVE, item("/drive/root:", "a.txt"), tenant)
