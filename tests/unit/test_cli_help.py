"""Every command of `graphhooks` and `devtools.simctl` explains each of its options, with no `<bool>` noise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from devtools.simctl import app as simctl
from graphhooks.cli import app as graphhooks

APPS = {"graphhooks": graphhooks, "simctl": simctl}


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Each command below ``command`` (typer's own click classes), with its path of names."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def _commands() -> Iterator[tuple[str, typer.Typer, tuple[str, ...], Any]]:
    for name, app in APPS.items():
        for path, command in _walk(typer.main.get_command(app)):
            yield name, app, path, command


COMMANDS = list(_commands())


def test_the_walk_finds_every_command():
    paths = {(name, *path) for name, _, path, _ in COMMANDS}
    assert ("graphhooks", "subscriptions", "create") in paths
    assert ("graphhooks", "poison", "replay") in paths
    assert ("simctl", "files", "create") in paths
    assert len(paths) > 20


@pytest.mark.parametrize(("name", "app", "path", "command"), COMMANDS, ids=[" ".join((c[0], *c[2])) for c in COMMANDS])
def test_every_option_and_argument_has_help_and_no_bool_metavar(name, app, path, command):
    assert command.help or path == (), f"{name} {' '.join(path)} has no help text"
    for param in command.params:
        assert param.param_type_name in ("option", "argument")
        assert getattr(param, "help", None), f"{name} {' '.join(path)}: {param.name} has no help text"
    shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "<bool>" not in shown.output, shown.output
