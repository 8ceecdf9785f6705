"""The operator commands of ``agentkit``: produce, dlq, status.

They are what a user of a deployed stack needs, against real AWS; the commands that drive the
local stand-ins live in infra/commands and are added by agent_core/cli.py when infra is installed.
Each module keeps its heavy imports (boto3, the pipeline) inside the command functions so that
``agentkit --help`` stays fast.
"""

from __future__ import annotations

import typer


def register_commands(app: typer.Typer) -> None:
    from agent_core.commands import dlq, produce, status

    app.command("produce")(produce.produce)
    app.command("status")(status.status)
    app.add_typer(dlq.dlq_app, name="dlq")
