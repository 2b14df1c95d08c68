"""The settings file `make run` writes for the CLI while the local stack runs.

`python -m devtools.stack` writes ``<run dir>/local.settings.json``: the local host's
``Values`` (Azurite's connection string, the simulator's Graph settings) and, under
``Stack``, the stack's own pid, its processes and its URLs. It deletes the file when it
stops. ``graphhooks`` run from the repository reads ``.run/local.settings.json`` when no
``./local.settings.json`` is there, but only while the stack that wrote it is alive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_DIR = Path(".run")
FILE_NAME = "local.settings.json"
STACK_SETTINGS = RUN_DIR / FILE_NAME


def write(path: Path, values: dict[str, str], stack: dict[str, Any]) -> None:
    """Write the settings, readable by the owner only (they hold the emulator's key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"IsEncrypted": False, "Values": values, "Stack": stack}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def read_stack(path: Path) -> dict[str, Any] | None:
    """The ``Stack`` block of a file the stack wrote, or None when it is absent or unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stack = raw.get("Stack") if isinstance(raw, dict) else None
    return stack if isinstance(stack, dict) else None


def running(path: Path = STACK_SETTINGS) -> bool:
    """True when ``path`` was written by a stack whose process is still alive."""
    stack = read_stack(path)
    pid = stack.get("pid") if stack else None
    return isinstance(pid, int) and alive(pid)


def alive(pid: int) -> bool:
    """True when a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
