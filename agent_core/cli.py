"""The ``agentkit`` command line. Each command group lives in its own module and is added here.

The operator commands (produce, dlq, status) are the library's own (agent_core/commands). Other
packages add theirs through the ``agentkit.commands`` entry point group: a callable taking the
typer app. infra registers the commands that drive the local stand-ins (demo, poll, events,
bench, emulator) that way, so the library never imports infra, and an install without infra
simply lacks them.

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


COMMANDS_ENTRY_POINT_GROUP = "agentkit.commands"


def _register() -> None:
    from importlib.metadata import entry_points

    from agent_core.commands import register_commands

    register_commands(app)
    for entry_point in entry_points(group=COMMANDS_ENTRY_POINT_GROUP):
        try:
            register = entry_point.load()
        except ModuleNotFoundError as exc:
            # The package that declared the commands is not importable here (e.g. infra, which
            # a deployed install may leave out): its commands are absent, the rest still work.
            # Any other import failure is a bug in that package and must show.
            if exc.name != entry_point.module.partition(".")[0]:
                raise
            continue
        register(app)


_register()


def main() -> None:
    try:
        app()
    except AgentkitError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
