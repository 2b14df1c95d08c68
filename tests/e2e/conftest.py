"""End-to-end fixtures: whole local stacks (Azurite, the Graph simulator, the local host) as processes.

Every stack a test starts is stopped when the test ends, pass or fail; when a test
fails, the tails of its stacks' host and simulator logs are printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.simclient import SimControl
from devtools.stack import LocalStack, start_stack
from tests.e2e.support import E2E, Changes, print_logs


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    return any(report is not None and report.failed for report in reports)


@pytest.fixture
def stack_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalStack]]:
    """Start private stacks (for tests that disrupt theirs); all are stopped at the end, pass or fail."""
    started: list[LocalStack] = []

    def make(**options: Any) -> LocalStack:
        stack = start_stack(tmp_path / f"stack{len(started)}", **options)
        started.append(stack)
        return stack

    yield make
    if _failed(request):
        for index, stack in enumerate(started):
            print_logs(stack, f"stack{index}")
    for stack in started:
        stack.stop()


@pytest.fixture
async def e2e_factory(stack_factory: Callable[..., LocalStack]) -> Any:
    """Private stacks wrapped with a simulator control client (closed at the end)."""
    controls: list[SimControl] = []

    async def make(**options: Any) -> E2E:
        stack = await asyncio.to_thread(stack_factory, **options)
        control = await SimControl(stack.sim.control_url).__aenter__()
        controls.append(control)
        return E2E(stack, control, Changes(stack.azurite.connection_string))

    yield make
    for control in controls:
        await control.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the tests that leave it as they found it; subscribed to the demo drive."""
    stack = start_stack(tmp_path_factory.mktemp("shared"))
    try:

        async def subscribe() -> None:
            async with SimControl(stack.sim.control_url) as control:
                await E2E(stack, control, Changes(stack.azurite.connection_string)).subscribe()

        asyncio.run(subscribe())
    except BaseException:
        print_logs(stack, "shared stack (start-up failed)")
        stack.stop()
        raise
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def shared(shared_stack: LocalStack, request: pytest.FixtureRequest) -> Any:
    """The shared stack for one test: fresh control client, graph-changes emptied first."""
    async with SimControl(shared_stack.sim.control_url) as control:
        e2e = E2E(shared_stack, control, Changes(shared_stack.azurite.connection_string))
        await e2e.idle()
        await e2e.changes.read()
        e2e.changes.events.clear()
        yield e2e
    if _failed(request):
        print_logs(shared_stack, "shared stack")
