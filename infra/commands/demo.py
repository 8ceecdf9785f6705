"""``agentkit demo``: the whole pipeline on this machine, no cloud account needed.

Starts the Encord emulator with the demo project and a moto server, creates the queues and the
lease table as template.yaml defines them, runs producer ticks (as the schedule would) and the
local event-source poller feeding the real consumer handler, then reports where every task went,
what was retried and what ended in the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agent_core.commands._common import console, handler_output_to_stderr, print_json
from agent_core.commands.produce import print_summary
from agent_core.commands.status import render_status
from infra.commands.common import load_shape

if TYPE_CHECKING:
    from rich.console import Console

    from agent_core.commands.status import StatusReport
    from infra.localstack.poller import InvocationReport, PollerStats
    from infra.localstack.stack import LocalStack


def _enqueued(summary: Any) -> int:
    if isinstance(summary, dict):
        totals = summary.get("totals")
        if isinstance(totals, dict) and isinstance(totals.get("enqueued"), int):
            return int(totals["enqueued"])
        stages = summary.get("stages")
        if isinstance(stages, dict):
            return sum(int(s.get("enqueued", 0)) for s in stages.values() if isinstance(s, dict))
    return 0


def _drain_with_progress(
    stack: LocalStack, total: int, timeout: float, out: Console, quiet: bool
) -> PollerStats:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]consumer"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[text]}"),
        TimeElapsedColumn(),
        console=out,
        transient=False,
        disable=quiet,
    ) as progress:
        bar = progress.add_task("consume", total=total, text="")
        poller = stack.poller()

        def on_invocation(report: InvocationReport) -> None:
            s = poller.stats
            progress.update(
                bar,
                completed=s.deleted,
                text=f"{s.invocations} invocations, {s.redeliveries} retries",
            )

        poller.on_invocation = on_invocation
        stats = poller.drain(timeout_seconds=timeout)
        progress.update(bar, completed=stats.deleted)
    return stats


def _report(
    stack: LocalStack, stats: PollerStats, ticks: list[Any], elapsed: float
) -> dict[str, Any]:
    dlq = stack.dlq_messages()
    return {
        "project_hash": stack.project_hash,
        "elapsed_seconds": round(elapsed, 1),
        "producer_ticks": ticks,
        "pathways": stack.pathway_counts(),
        "stage_counts": stack.emulator.state.stage_counts(stack.project_hash),
        "consumer": stats.as_dict(),
        "dlq": [m.to_json() for m in dlq],
        "work_queue_depth": stack.queue_depth(),
    }


def _print_report(report: dict[str, Any], out: Console) -> None:
    from rich.table import Table

    pathways = Table(title="Tasks moved by the agents (emulator action history)")
    pathways.add_column("stage")
    pathways.add_column("pathway")
    pathways.add_column("tasks", justify="right")
    for stage, counts in sorted(report["pathways"].items()):
        for pathway, count in sorted(counts.items()):
            pathways.add_row(stage, pathway, str(count))
    out.print(pathways)

    stages = Table(title="Tasks per stage now")
    stages.add_column("stage")
    stages.add_column("tasks", justify="right")
    for stage, count in report["stage_counts"].items():
        stages.add_row(stage, str(count))
    out.print(stages)

    consumer = report["consumer"]
    out.print(
        f"Consumer: {consumer['invocations']} invocations, {consumer['messages']} messages "
        f"delivered, {consumer['redeliveries']} retries (redeliveries), "
        f"{consumer['failures_reported']} failures reported, "
        f"{'drained' if consumer['drained'] else 'NOT drained'} in "
        f"{consumer['elapsed_seconds']:.1f}s."
    )
    if report["dlq"]:
        dlq = Table(title=f"Dead-letter queue: {len(report['dlq'])} message(s)")
        for column in ("stage", "task", "reason", "error"):
            dlq.add_column(column, overflow="fold")
        for m in report["dlq"]:
            dlq.add_row(
                m["stage_name"] or m["stage_uuid"] or "?",
                m["data_title"] or m["task_uuid"] or "?",
                m["reason"],
                f"{m['error_type']}: {m['error']}"[:200],
            )
        out.print(dlq)
        out.print(
            "Against a deployed stack these would be replayed with "
            "`agentkit dlq replay` once the agent is fixed."
        )
    else:
        out.print("Dead-letter queue: empty.")
    out.print(f"Demo finished in {report['elapsed_seconds']}s.")


def demo(
    fixture: str = typer.Option(
        "demo", "--fixture", help="Emulator fixture: demo, basic or a JSON path."
    ),
    agent_module: str = typer.Option(
        "agents.example:runner", "--agent-module", help="Runner to run: 'package.module:attr'."
    ),
    template: Path | None = typer.Option(
        None, "--template", help="SAM template with the queue settings (default template.yaml)."
    ),
    batching_window: float | None = typer.Option(
        None, "--batching-window", help="Seconds to fill a batch. Default: the template's."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Parallel consumer invocations. Default: the template's."
    ),
    max_ticks: int = typer.Option(
        3, "--max-ticks", min=1, help="Producer ticks at most (stops when one enqueues nothing)."
    ),
    timeout: float = typer.Option(110.0, "--timeout", help="Give up draining after this long."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the handlers' JSON logs."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Run the pipeline locally: emulator + moto + producer + poller + real consumer handler."""
    from infra.localstack.stack import LocalStack

    started = time.monotonic()
    out = console(stderr=json_output)
    quiet_logs = not verbose
    if quiet_logs:
        logging.getLogger("agent_core").setLevel(logging.CRITICAL)
    shape = load_shape(template).replace(
        maximum_batching_window_seconds=batching_window, maximum_concurrency=concurrency
    )
    # Handler failures show up in the report (retries, DLQ); log lines would break the progress
    # bar, so the handlers' logs and metrics are off unless --verbose.
    extra_env: dict[str, str | None] = (
        {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "LOG_LEVEL": "CRITICAL"} if quiet_logs else {}
    )
    out.print(
        f"Starting the Encord emulator ({fixture!r} fixture) and a moto server; queues: batch "
        f"{shape.batch_size}, window {shape.maximum_batching_window_seconds}s, concurrency "
        f"{shape.maximum_concurrency}, maxReceiveCount {shape.max_receive_count}, visibility "
        f"{shape.visibility_timeout_seconds}s."
    )
    with (
        handler_output_to_stderr(),
        LocalStack(
            fixture=fixture,
            agent_module=agent_module,
            shape=shape,
            quiet_handlers=quiet_logs,
            extra_env=extra_env,
            cloud_stack=True,
        ) as stack,
    ):
        ticks: list[Any] = []
        stats: PollerStats | None = None
        # Ticks as the schedule would fire them, until one finds nothing new to enqueue (tasks
        # an agent moved into another agent stage are picked up by the next tick).
        for tick in range(1, max_ticks + 1):
            summary = stack.producer_tick()
            ticks.append(summary)
            enqueued = _enqueued(summary)
            if not json_output:
                print_summary(summary, title=f"Producer tick {tick}", out=out)
            if enqueued == 0 and stats is not None:
                break
            remaining = max(5.0, timeout - (time.monotonic() - started))
            stats = _merge(
                stats, _drain_with_progress(stack, enqueued, remaining, out, json_output)
            )
            if enqueued == 0:
                break
        if stats is None:  # unreachable: the first tick always drains
            raise RuntimeError("no consumer run")
        report = _report(stack, stats, ticks, time.monotonic() - started)
        # What `agentkit status --stack-name` shows for a deployed stack, read the same way
        # (describe_stacks) from the stack the local stack registered on moto.
        status_report = _status(stack)
        report["status"] = status_report.as_dict()
    if json_output:
        print_json(report)
    else:
        _print_report(report, out)
        out.print(f"\n$ agentkit status --stack-name {stack.stack_name}   (the local stack)")
        render_status(status_report, out)
    if not report["consumer"]["drained"]:
        raise typer.Exit(1)


def _status(stack: LocalStack) -> StatusReport:
    import boto3

    from agent_core.commands.status import collect_status, read_stack

    session = boto3.session.Session(region_name=stack.moto.region)
    endpoint = stack.moto.endpoint_url
    found = read_stack(session.client("cloudformation", endpoint_url=endpoint), stack.stack_name)
    return collect_status(found, session=session, endpoint_url=endpoint)


def _merge(total: PollerStats | None, part: PollerStats) -> PollerStats:
    if total is None:
        return part
    for name, value in part.__dict__.items():
        if isinstance(value, bool):
            setattr(total, name, value)
        elif isinstance(value, int | float):
            setattr(total, name, getattr(total, name) + value)
        elif isinstance(value, list):
            getattr(total, name).extend(value)
    return total
