"""``agentkit produce``: one producer tick, as the EventBridge schedule would trigger it.

The tick runs on this machine with the library the producer handler wraps, against whatever the
environment points at: real AWS and Encord, or the local stand-ins (moto, the emulator).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import typer

from agent_core.commands._common import (
    AGENT_MODULE_OPTION,
    ENDPOINT_URL_OPTION,
    LEASE_TABLE_OPTION,
    apply_env,
    console,
    handler_output_to_stderr,
    print_json,
    summary_rows,
)

if TYPE_CHECKING:
    from rich.console import Console

_SUMMARY_COLUMNS = ("listed", "enqueued", "skipped_in_flight", "failed_to_send", "truncated")


def run_producer_tick(timeout_seconds: float = 300.0) -> Any:
    """What handlers/producer.py does per scheduled event, with a Lambda-like context.

    The library call, not the handler module: what ships to Lambda is not a dependency of the
    command line (docs/ARCHITECTURE.md).
    """
    from aws_lambda_powertools import Logger

    from agent_core.pipeline.context import LocalLambdaContext
    from agent_core.pipeline.fanout import PRODUCER_SERVICE, handle_scheduled_event
    from agent_core.pipeline.observability import service_name

    logger = Logger(service=service_name(PRODUCER_SERVICE))
    context = LocalLambdaContext(
        function_name="ProducerFunction", timeout_ms=int(timeout_seconds * 1000)
    )
    # The summary's event_id: a tick from the command line has no EventBridge event, only an id.
    return handle_scheduled_event(
        {"id": f"agentkit-produce-{uuid.uuid4()}"}, context, logger=logger
    )


def print_summary(summary: Any, title: str = "Producer tick", out: Console | None = None) -> None:
    from rich.table import Table

    rows = summary_rows(summary)
    if not rows:
        print_json(summary)
        return
    present = {k for _, counters in rows for k, v in counters.items() if isinstance(v, int | float)}
    # The counters people look at first; others stay in --json.
    columns = [c for c in _SUMMARY_COLUMNS if c in present] or sorted(present)
    table = Table(title=title)
    table.add_column("stage")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for stage, counters in rows:
        table.add_row(stage, *(str(counters.get(c, "")) for c in columns))
    (out or console()).print(table)


def produce(
    agent_module: str | None = AGENT_MODULE_OPTION,
    project_hash: str | None = typer.Option(
        None, "--project-hash", envvar="PROJECT_HASH", help="Encord project whose stages to poll."
    ),
    queue_url: str | None = typer.Option(
        None, "--queue-url", envvar="WORK_QUEUE_URL", help="Work queue to send the tasks to."
    ),
    lease_table: str | None = LEASE_TABLE_OPTION,
    max_tasks: int | None = typer.Option(
        None, "--max-tasks", envvar="MAX_TASKS_PER_RUN", help="Most tasks to enqueue in this tick."
    ),
    endpoint_url: str | None = ENDPOINT_URL_OPTION,
    region: str | None = typer.Option(
        None, "--region", envvar="AWS_REGION", help="AWS region of the queue and table."
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="The tick's time budget in seconds."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run one producer tick: list the runner's stages and enqueue their tasks (with leases)."""
    apply_env(
        {
            "AGENT_MODULE": agent_module,
            "PROJECT_HASH": project_hash,
            "WORK_QUEUE_URL": queue_url,
            "LEASE_TABLE_NAME": lease_table,
            "MAX_TASKS_PER_RUN": max_tasks,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
    )
    with handler_output_to_stderr():
        summary = run_producer_tick(timeout)
    if json_output:
        print_json(summary)
    else:
        print_summary(summary)
