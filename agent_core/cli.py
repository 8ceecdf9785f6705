"""The ``agentkit`` command line. Each command group lives in its own module and is added here.

Command modules import their heavy dependencies inside the command functions, so that
``agentkit --help`` stays fast. AgentkitError is printed as one line without a traceback.
"""

from __future__ import annotations

import sys

import typer

from agent_core.exceptions import AgentkitError

app = typer.Typer(
    name="agentkit",
    help="Run Encord task agents on AWS Lambda + SQS, or locally against an emulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: typer's rich help labels every flag "<bool>", as if it took a value.
    rich_markup_mode=None,
)


def _register() -> None:
    # Each module defines a typer app or commands; a missing one means that part is not built yet.
    from infra.emulator.cli import emulator_app

    app.add_typer(emulator_app, name="emulator")

    from agent_core.commands import register_commands

    register_commands(app)


_register()


def main() -> None:
    try:
        app()
    except AgentkitError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
