"""Opaque delta tokens: a deltaLink position or a nextLink page cursor, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class DeltaToken:
    """A decoded token: ``kind`` is ``d`` (deltaLink) or ``p`` (a page of a run)."""

    kind: str
    drive_id: str
    seq: int
    epoch: int
    issued: float
    cursor: str = ""
    offset: int = 0

    def encode(self) -> str:
        """Serialise to the opaque URL-safe form."""
        return encode_token(
            {
                "k": self.kind,
                "d": self.drive_id,
                "s": self.seq,
                "e": self.epoch,
                "t": round(self.issued, 3),
                "c": self.cursor,
                "o": self.offset,
            }
        )

    @classmethod
    def decode(cls, text: str) -> DeltaToken | None:
        """Parse a token, or ``None`` if it is not one of ours."""
        data = decode_token(text)
        if data is None:
            return None
        try:
            return cls(
                kind=str(data["k"]),
                drive_id=str(data["d"]),
                seq=int(data["s"]),
                epoch=int(data["e"]),
                issued=float(data["t"]),
                cursor=str(data.get("c", "")),
                offset=int(data.get("o", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def encode_token(data: dict[str, Any]) -> str:
    """An opaque URL-safe token for a delta position or page: base64url JSON."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(text: str) -> dict[str, Any] | None:
    """A token's content, or None when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class CursorCache:
    """Item-id lists of delta runs in progress, so later pages stay consistent.

    Bounded by runs (``capacity``) and by ids held (``max_ids``, a list shared by several
    runs counted once): the least recently used runs go first, and an evicted run's next
    page answers 410 like an expired token.  The newest run's list is always kept.
    """

    def __init__(self, capacity: int = 2000, max_ids: int = 5_000_000) -> None:
        self.capacity = capacity
        self.max_ids = max_ids
        self.held = 0
        self._runs: OrderedDict[str, list[str]] = OrderedDict()
        self._refs: dict[int, int] = {}  # id() of a held list -> runs holding it

    def put(self, ids: list[str]) -> str:
        """Store a run's ordered ids; returns the cursor id."""
        cid = secrets.token_urlsafe(9)
        self._runs[cid] = ids
        refs = self._refs.get(id(ids), 0)
        if not refs:
            self.held += len(ids)
        self._refs[id(ids)] = refs + 1
        while len(self._runs) > self.capacity:
            _, old = self._runs.popitem(last=False)
            self._release(old)
        if self.held > self.max_ids:
            for old_cid, old in list(self._runs.items()):
                if self.held <= self.max_ids:
                    break
                if old is not ids:  # runs sharing the newest list would free nothing
                    del self._runs[old_cid]
                    self._release(old)
        return cid

    def _release(self, ids: list[str]) -> None:
        refs = self._refs.pop(id(ids)) - 1
        if refs:
            self._refs[id(ids)] = refs
        else:
            self.held -= len(ids)

    def get(self, cid: str) -> list[str] | None:
        """The ids of a run, or ``None`` if it has been evicted."""
        ids = self._runs.get(cid)
        if ids is not None:
            self._runs.move_to_end(cid)
        return ids

    def __len__(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        """Forget all runs."""
        self._runs.clear()
        self._refs.clear()
        self.held = 0
