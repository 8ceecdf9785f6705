"""``agentkit poll``: the local SQS event-source poller driving the real consumer handler.

Against a moto server (AWS_ENDPOINT_URL) it is how the local stack runs; against real SQS it
runs the consumer on this machine instead of in Lambda (stop the event-source mapping first, or
both will compete for messages).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from agent_core.commands._common import (
    AGENT_MODULE_OPTION,
    ENDPOINT_URL_OPTION,
    LEASE_TABLE_OPTION,
    apply_env,
    console,
    handler_output_to_stderr,
    print_json,
    required_option,
)
from infra.commands.common import load_shape

if TYPE_CHECKING:
    from infra.localstack.poller import InvocationReport, LocalPoller


def make_consumer_poller(queue_url: str, **kw: object) -> LocalPoller:
    from handlers.consumer import lambda_handler
    from infra.localstack.poller import LocalPoller

    return LocalPoller(lambda_handler, queue_url=queue_url, **kw)  # type: ignore[arg-type]


def poll(
    queue_url: str | None = typer.Option(
        None, "--queue-url", envvar="WORK_QUEUE_URL", help="Work queue to consume."
    ),
    dlq_url: str | None = typer.Option(
        None,
        "--dlq-url",
        envvar="DEAD_LETTER_QUEUE_URL",
        help="Dead-letter queue the consumer parks failed tasks in.",
    ),
    agent_module: str | None = AGENT_MODULE_OPTION,
    project_hash: str | None = typer.Option(
        None, "--project-hash", envvar="PROJECT_HASH", help="Encord project of the tasks."
    ),
    lease_table: str | None = LEASE_TABLE_OPTION,
    template: Path | None = typer.Option(
        None, "--template", help="SAM template to read the batch settings from (template.yaml)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Default: the template's."),
    batching_window: float | None = typer.Option(
        None, "--batching-window", help="Seconds to fill a batch. Default: the template's."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Parallel invocations. Default: the template's maximum."
    ),
    function_timeout: float | None = typer.Option(
        None, "--function-timeout", help="Seconds per invocation. Default: the template's."
    ),
    duration: float = typer.Option(
        300.0, "--duration", help="Stop after this many seconds even if the queue is not empty."
    ),
    endpoint_url: str | None = ENDPOINT_URL_OPTION,
    region: str | None = typer.Option(
        None, "--region", envvar="AWS_REGION", help="AWS region of the queues and table."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Feed the work queue to the consumer handler in Lambda-shaped batches until it is empty."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    url = required_option(queue_url, "--queue-url", "WORK_QUEUE_URL")
    apply_env(
        {
            "WORK_QUEUE_URL": url,
            "DEAD_LETTER_QUEUE_URL": dlq_url,
            "AGENT_MODULE": agent_module,
            "PROJECT_HASH": project_hash,
            "LEASE_TABLE_NAME": lease_table,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
    )
    shape = load_shape(template).replace(
        batch_size=batch_size,
        maximum_batching_window_seconds=batching_window,
        maximum_concurrency=concurrency,
        consumer_timeout_seconds=function_timeout,
    )
    with (
        handler_output_to_stderr(),
        Progress(
            TextColumn("[bold]polling"),
            BarColumn(),
            TextColumn("{task.fields[text]}"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
            disable=json_output,
        ) as progress,
    ):
        bar = progress.add_task("poll", total=None, text="")
        poller = make_consumer_poller(
            url,
            batch_size=shape.batch_size,
            batching_window_seconds=shape.maximum_batching_window_seconds,
            maximum_concurrency=shape.maximum_concurrency,
            function_timeout_seconds=shape.consumer_timeout_seconds,
        )

        def on_invocation(report: InvocationReport) -> None:
            s = poller.stats
            progress.update(
                bar,
                text=f"{s.invocations} invocations, {s.messages} messages, "
                f"{s.deleted} done, {s.failures_reported} failures reported",
            )

        poller.on_invocation = on_invocation
        stats = poller.drain(timeout_seconds=duration)
    if json_output:
        print_json(stats.as_dict())
        return
    out = console()
    state = "queue drained" if stats.drained else f"stopped after {duration:.0f}s (not drained)"
    out.print(
        f"{state}: {stats.invocations} invocations, {stats.messages} messages, "
        f"{stats.deleted} deleted, {stats.failures_reported} failures reported, "
        f"{stats.redeliveries} redeliveries, {stats.handler_errors} handler errors"
    )
    for error in stats.errors[-5:]:
        out.print(f"[yellow]warning:[/yellow] {error}")
