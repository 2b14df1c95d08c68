"""The ``graphhooks`` command: typer app and its command groups, one module each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import cursor, desired, eventgrid, events, poison, subscriptions, tenants
from .runtime import Session, console, quiet_sdk_logs

PIPED_WIDTH = 240

app = typer.Typer(
    name="graphhooks",
    help="Operate the Graph change notifications app: subscriptions, desired entries, poison queues, events, tenants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich panels print a `<bool>` type beside every flag.
    rich_markup_mode=None,
)
app.add_typer(subscriptions.app, name="subscriptions", no_args_is_help=True)
app.add_typer(desired.app, name="desired", no_args_is_help=True)
app.add_typer(poison.app, name="poison", no_args_is_help=True)
app.add_typer(cursor.app, name="cursor", no_args_is_help=True)
app.add_typer(events.app, name="events", no_args_is_help=True)
app.add_typer(tenants.app, name="tenants", no_args_is_help=True)
app.add_typer(eventgrid.app, name="eventgrid", no_args_is_help=True)


@app.callback()
def settings(
    ctx: typer.Context,
    settings_path: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            metavar="PATH",
            help="A local.settings.json whose Values are read under the environment"
            " (default: ./local.settings.json when present).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Read the app's settings (AzureWebJobsStorage and friends) from the environment or local.settings.json."""
    quiet_sdk_logs()
    ctx.obj = Session(settings_path)
    if not console.is_terminal:
        # Piped or captured: rich would wrap tables at 80 columns; whole lines are easier to grep.
        console.width = PIPED_WIDTH


def main() -> None:
    """The console script's entry point."""
    app()


if __name__ == "__main__":
    main()
