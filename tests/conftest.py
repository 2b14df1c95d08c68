"""Shared fixtures: real servers started once per session, handed out as factories."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.azurite import Azurite, start_azurite

ROOT = Path(__file__).resolve().parent.parent


PAYLOADS = ROOT / "tests" / "payloads"
_counter = itertools.count()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the session; tests keep apart through unique names."""
    emulator = start_azurite()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(autouse=True)
def _fresh_refusal_counts() -> None:
    """Each test starts with an empty refusal ledger: refusals.count adds to one per process."""
    from shared import refusals

    refusals.ledger().clear()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make queue and table names that no other test uses (letters and digits only)."""

    def make(prefix: str) -> str:
        return f"{prefix}{next(_counter)}x{id(make) % 100000}"

    return make


@pytest.fixture
def azurite_factory(tmp_path: Path) -> Iterator[Callable[..., Azurite]]:
    """Start private Azurite instances (optionally on disk, to survive a restart)."""
    started: list[Azurite] = []

    def make(persistent: bool = False) -> Azurite:
        emulator = start_azurite(tmp_path / f"azurite{len(started)}" if persistent else None)
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()
