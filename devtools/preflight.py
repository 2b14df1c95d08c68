"""`make setup`'s first step: are Python and Node new enough? Say what is needed, before pip or npm do.

Python must satisfy pyproject.toml's ``requires-python``; Node should satisfy Azurite's
``engines`` (read from package-lock.json, so before `npm ci`). A Python that is too old,
or no Node or npm at all, stops the build; a Node older than Azurite asks for is a
warning, said once here instead of in npm's EBADENGINE blocks.

Runs under whatever ``python3`` `make` found, before the virtualenv exists: standard
library only, and nothing a Python older than the project's would fail to parse.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE = "node_modules/azurite"


def version(text: str) -> tuple[int, ...]:
    """The numbers of a version such as ``v20.11.1`` or ``3.11``."""
    found = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if found is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in found.group(1).split("."))


def minimum(requirement: str) -> tuple[int, ...]:
    """The lower bound of a requirement written ``>=X[.Y[.Z]]`` (the only form the project uses)."""
    found = re.fullmatch(r"\s*>=\s*(\d+(?:\.\d+)*)\s*", requirement)
    if found is None:
        raise ValueError(f"only '>=X.Y' requirements are understood, not {requirement!r}")
    return version(found.group(1))


def requires_python(root: Path = ROOT) -> str:
    """``requires-python`` from pyproject.toml (read with a pattern: tomllib is 3.11+)."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if found is None:
        raise ValueError("pyproject.toml has no requires-python")
    return found.group(1)


def azurite_engine(root: Path = ROOT) -> tuple[str, str]:
    """Azurite's version and its ``engines.node``, from package-lock.json."""
    lock = json.loads((root / "package-lock.json").read_text(encoding="utf-8"))
    package = lock["packages"][AZURITE]
    return str(package["version"]), str(package["engines"]["node"])


def check_python(current: tuple[int, ...], requirement: str, executable: str) -> list[str]:
    """An error when ``current`` is older than the requirement."""
    if current >= minimum(requirement):
        return []
    shown = ".".join(map(str, current))
    return [
        f"error: Python {shown} ({executable}) is too old: pyproject.toml requires-python {requirement}."
        " Install Python 3.11 or newer, or name one: `make PYTHON=/path/to/python3.11 setup`."
    ]


def check_node(current: str | None, npm: bool, azurite: tuple[str, str]) -> tuple[list[str], list[str]]:
    """Errors (no node, no npm) and warnings (a Node older than Azurite asks for)."""
    release, requirement = azurite
    need = f"Azurite {release} (the storage emulator) needs Node {requirement} (package-lock.json)"
    if current is None:
        return [f"error: Node.js is not installed (no `node` on PATH): {need}; install it, e.g. `nvm install 22`."], []
    if not npm:
        return [
            f"error: npm is not installed (no `npm` on PATH): it comes with Node.js and installs Azurite {release}."
        ], []
    if version(current) >= minimum(requirement):
        return [], []
    return [], [
        f"warning: Node {current.strip()} is older than {need}: npm will warn EBADENGINE and this Node"
        " is unsupported; install Node 22 or newer (e.g. `nvm install 22`)."
    ]


def node_version() -> str | None:
    """``node --version``, or None when there is no node."""
    node = shutil.which("node")
    if node is None:
        return None
    return subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout


def main(argv: list[str]) -> int:
    """`python -m devtools.preflight [python] [node]`: print what is wrong; 1 when setup cannot go on."""
    errors: list[str] = []
    warnings: list[str] = []
    if "python" in argv or not argv:
        errors += check_python(tuple(sys.version_info[:3]), requires_python(), sys.executable)
    if "node" in argv or not argv:
        found, warned = check_node(node_version(), shutil.which("npm") is not None, azurite_engine())
        errors += found
        warnings += warned
    for line in warnings + errors:
        print(line, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
