"""``agentkit dlq inspect`` and ``agentkit dlq replay``: look into the DLQ and move tasks back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from agent_core.commands._common import (
    ENDPOINT_URL_OPTION,
    STACK_NAME_OPTION,
    console,
    print_json,
    required_option,
    sqs_client,
)
from agent_core.commands.status import (
    DLQ_OUTPUT,
    WORK_QUEUE_OUTPUT,
    outputs_or_options,
)
from agent_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from agent_core.pipeline.replay import DlqFilter, DlqMessage

dlq_app = typer.Typer(help="Inspect the dead-letter queue and replay messages from it.")

_DLQ_URL = typer.Option(
    None,
    "--dlq-url",
    envvar="DEAD_LETTER_QUEUE_URL",
    help="The dead-letter queue URL (default: the --stack-name stack's DeadLetterQueueUrl).",
)
_REGION = typer.Option(None, "--region", envvar="AWS_REGION", help="AWS region of the queues.")
_STAGE = typer.Option(None, "--stage", help="Only messages of this stage (name or UUID).")
_ERROR = typer.Option(None, "--error-contains", help="Only messages whose error contains this.")
_TASK = typer.Option(None, "--task", help="Only this task (task UUID, data hash or data title).")
_REASON = typer.Option(None, "--reason", help="Only this reason: poison, failed or redrive.")


def _filter(
    stage: str | None, error_contains: str | None, task: str | None, reason: str | None
) -> DlqFilter:
    from agent_core.pipeline.replay import DlqFilter

    if reason is not None and reason not in ("poison", "failed", "redrive"):
        raise ConfigurationError(f"--reason {reason!r}: use poison, failed or redrive")
    return DlqFilter(
        stage=stage,
        error_contains=error_contains,
        task=task,
        reason=reason,  # type: ignore[arg-type]
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _table(messages: list[DlqMessage], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("message id", "reason", "stage", "task", "error", "receives", "age"):
        table.add_column(column, overflow="fold")
    for m in messages:
        task = m.data_title or m.task_uuid or "?"
        error = f"{m.error_type or '?'}: {(m.error or '').strip()}"
        table.add_row(
            m.message_id[:8],
            m.reason,
            m.stage_name or (m.stage_uuid or "?")[:8],
            task,
            error[:160],
            str(m.receive_count) if m.receive_count is not None else "-",
            _age(m.age_seconds()),
        )
    console().print(table)


@dlq_app.command("inspect")
def inspect(
    stack_name: str | None = STACK_NAME_OPTION,
    dlq_url: str | None = _DLQ_URL,
    stage: str | None = _STAGE,
    error_contains: str | None = _ERROR,
    task: str | None = _TASK,
    reason: str | None = _REASON,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    max_messages: int = typer.Option(10_000, "--max-messages", help="Stop after this many."),
    endpoint_url: str | None = ENDPOINT_URL_OPTION,
    region: str | None = _REGION,
) -> None:
    """List the DLQ's messages with their stage, task and error (the queue is left unchanged)."""
    from agent_core.pipeline.replay import inspect_dlq

    found = outputs_or_options(stack_name, region, endpoint_url, {DLQ_OUTPUT: dlq_url})
    url = required_option(found[DLQ_OUTPUT], "--stack-name or --dlq-url", "DEAD_LETTER_QUEUE_URL")
    messages = inspect_dlq(
        sqs_client(endpoint_url, region),
        url,
        dlq_filter=_filter(stage, error_contains, task, reason),
        max_messages=max_messages,
    )
    if json_output:
        print_json([m.to_json() for m in messages])
        return
    if not messages:
        console().print("The dead-letter queue has no matching messages.")
        return
    _table(messages, f"Dead-letter queue: {len(messages)} message(s)")


@dlq_app.command("replay")
def replay(
    stack_name: str | None = STACK_NAME_OPTION,
    dlq_url: str | None = _DLQ_URL,
    queue_url: str | None = typer.Option(
        None,
        "--queue-url",
        envvar="WORK_QUEUE_URL",
        help="The work queue to send them to (default: the --stack-name stack's WorkQueueUrl).",
    ),
    stage: str | None = _STAGE,
    error_contains: str | None = _ERROR,
    task: str | None = _TASK,
    reason: str | None = _REASON,
    limit: int | None = typer.Option(None, "--limit", help="Replay at most this many."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would move; move nothing."),
    move_task: bool | None = typer.Option(
        None,
        "--move-task/--no-move-task",
        help="Use SQS StartMessageMoveTask (default: when there is no filter and it is available).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    endpoint_url: str | None = ENDPOINT_URL_OPTION,
    region: str | None = _REGION,
) -> None:
    """Send DLQ messages (all or filtered) back to the work queue, then delete them from the DLQ."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from agent_core.pipeline.replay import queue_depth, replay_dlq

    found = outputs_or_options(
        stack_name, region, endpoint_url, {DLQ_OUTPUT: dlq_url, WORK_QUEUE_OUTPUT: queue_url}
    )
    dlq = required_option(found[DLQ_OUTPUT], "--stack-name or --dlq-url", "DEAD_LETTER_QUEUE_URL")
    work = required_option(
        found[WORK_QUEUE_OUTPUT], "--stack-name or --queue-url", "WORK_QUEUE_URL"
    )
    sqs = sqs_client(endpoint_url, region)
    verb = "would replay" if dry_run else "replayed"
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console(stderr=True),
        transient=True,
        disable=json_output,
    ) as progress:
        bar = progress.add_task("dry run" if dry_run else "replaying", total=queue_depth(sqs, dlq))

        def on_progress(done: int, total: int | None) -> None:
            progress.update(bar, completed=done, total=total)

        result = replay_dlq(
            sqs,
            dlq,
            work,
            dlq_filter=_filter(stage, error_contains, task, reason),
            limit=limit,
            dry_run=dry_run,
            use_move_task=move_task,
            on_progress=on_progress,
        )
    if json_output:
        print_json(result.to_json())
        return
    out = console()
    if result.mode == "move_task":
        out.print(
            f"Started SQS message move task {result.move_task_handle}: about "
            f"{result.approximate_moved} message(s) go back to the work queue."
        )
        return
    if result.messages:
        _table(result.messages, f"{verb.capitalize()} {len(result.messages)} message(s)")
    count = result.matched if dry_run else result.replayed
    out.print(
        f"{verb} {count} of {result.scanned} scanned; {result.released} left in the DLQ"
        + (f"; {result.failed} failed to send" if result.failed else "")
        + (" (dry run: nothing was moved)" if dry_run else "")
    )
    for error in result.errors:
        out.print(f"[yellow]warning:[/yellow] {error}")
    if result.failed:
        raise typer.Exit(1)
