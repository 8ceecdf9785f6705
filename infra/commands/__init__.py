"""The ``agentkit`` commands that drive the local stand-ins: demo, events, poll, bench, emulator.

They live with what they drive (the emulator, moto, the local poller, the benchmarks), outside
the library that ships to Lambda. ``register`` is the ``agentkit.commands`` entry point
(pyproject.toml) through which agent_core/cli.py adds them when infra is installed; each module
keeps its heavy imports inside the command functions so that ``agentkit --help`` stays fast.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from infra.commands import bench, demo, events, poll
    from infra.emulator.cli import emulator_app

    app.add_typer(emulator_app, name="emulator")
    app.command("demo")(demo.demo)
    app.command("poll")(poll.poll)
    app.command("events")(events.events)
    app.command("bench")(bench.bench)
