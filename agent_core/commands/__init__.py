"""The operations commands of ``agentkit``: demo, produce, poll, dlq, events, status, bench.

Each module keeps its heavy imports (boto3, the handlers, infra.*) inside the command functions
so that ``agentkit --help`` stays fast.
"""

from __future__ import annotations

import typer


def register_commands(app: typer.Typer) -> None:
    from agent_core.commands import bench, demo, dlq, events, poll, produce, status

    app.command("demo")(demo.demo)
    app.command("produce")(produce.produce)
    app.command("poll")(poll.poll)
    app.command("events")(events.events)
    app.command("status")(status.status)
    app.add_typer(dlq.dlq_app, name="dlq")
    app.command("bench")(bench.bench)
