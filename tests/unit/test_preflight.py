"""`make setup`'s version check: it says what is needed before pip or npm do, in one line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.preflight import azurite_engine, check_node, check_python, minimum, requires_python, version

ROOT = Path(__file__).resolve().parents[2]


def test_the_requirements_are_read_from_pyproject_and_the_lock_file():
    assert minimum(requires_python()) == (3, 11)
    release, node = azurite_engine()
    assert release and minimum(node) >= (18,)


def test_a_python_older_than_requires_python_is_an_error_naming_both():
    [error] = check_python((3, 10, 12), ">=3.11", "/usr/bin/python3")
    assert "Python 3.10.12 (/usr/bin/python3) is too old" in error and "requires-python >=3.11" in error
    assert check_python((3, 11, 0), ">=3.11", "python3") == []


def test_no_node_or_no_npm_is_an_error_saying_what_azurite_needs():
    errors, _ = check_node(None, True, ("3.37.0", ">=22.0.0"))
    assert errors == [
        "error: Node.js is not installed (no `node` on PATH): Azurite 3.37.0 (the storage emulator) needs"
        " Node >=22.0.0 (package-lock.json); install it, e.g. `nvm install 22`."
    ]
    errors, _ = check_node("v22.1.0", False, ("3.37.0", ">=22.0.0"))
    assert errors and "npm is not installed" in errors[0]


def test_a_node_older_than_azurite_asks_for_is_one_warning():
    errors, warnings = check_node("v20.20.2\n", True, ("3.37.0", ">=22.0.0"))
    assert errors == []
    assert warnings == [
        "warning: Node v20.20.2 is older than Azurite 3.37.0 (the storage emulator) needs Node >=22.0.0"
        " (package-lock.json): npm will warn EBADENGINE and this Node is unsupported; install Node 22 or newer"
        " (e.g. `nvm install 22`)."
    ]
    assert check_node("v22.0.0", True, ("3.37.0", ">=22.0.0")) == ([], [])


def test_only_lower_bounds_are_understood():
    assert version("v20.20.2") == (20, 20, 2)
    with pytest.raises(ValueError, match=r"only '>=X\.Y'"):
        minimum("^18 || >=20")


def _fake_node(directory: Path, answer: str) -> dict[str, str]:
    for tool, text in (("node", answer), ("npm", "11.0.0")):
        path = directory / tool
        path.write_text(f"#!/bin/sh\necho {text}\n")
        path.chmod(0o755)
    return {**os.environ, "PATH": str(directory)}  # nothing else: no real node or npm


def test_the_check_runs_as_make_runs_it(tmp_path):
    """`python -m devtools.preflight node` with an old node on PATH: a warning, and setup goes on."""
    env = _fake_node(tmp_path, "v20.0.0")
    done = subprocess.run(
        [sys.executable, "-m", "devtools.preflight", "node"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stderr.startswith("warning: Node v20.0.0 is older than Azurite")
    (tmp_path / "node").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "devtools.preflight", "node"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.startswith("error: Node.js is not installed")
