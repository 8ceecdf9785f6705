"""1. Encord requests per task in the consumer.

Through the real consumer handler: the producer handler enqueues the project's tasks (real
envelopes on a moto queue), the local poller hands them to ``handlers.consumer.lambda_handler``
in batches of 1 and of 10, and the emulator counts the Encord API requests of each invocation.
Before each batch size the process forgets its runner and Encord client (a new execution
environment): its first invocation is the cold figure, the following ones the warm figures.

The baseline processes one task at a time with the SDK calls the stage function needs done for
that task alone (``baselines.per_task_consume``), with the project already fetched.
"""

from __future__ import annotations

from typing import Any

from infra.bench.common import BenchContext, BenchError, Step, diff, project_spec
from infra.bench.results import Row, Target

SECTION = "1 requests"
LABELS = {
    "task_only": "(a) task only",
    "label_row": "(b) label row",
    "label_row_storage": "(c) label row + storage item",
    "save_priority": "(d) save + priority",
}
# (b) at batch 10: one label-row initialisation and one pathway bundle per ten tasks.
LABEL_ROW_BATCH10_TARGET = Target("max", 0.2, "req/task")


def _invoke_counted(ctx: BenchContext, poller: Any, expected: int) -> dict[str, Any]:
    before = ctx.encord_requests()
    report = poller.run_once(wait_seconds=5)
    after = ctx.encord_requests()
    if report is None:
        raise BenchError("no message reached the consumer (the work queue is empty)")
    if report.outcome != "ok" or report.failures_reported:
        raise BenchError(
            f"consumer invocation {report.outcome} with {report.failures_reported} failed "
            f"record(s): {report.error or 'see the handler log'}"
        )
    if report.records != expected:
        raise BenchError(f"expected a batch of {expected} records, the poller got {report.records}")
    routes = diff(after, before)
    return {"records": report.records, "requests": sum(routes.values()), "routes": routes}


def measure_kit(ctx: BenchContext, kind: str, step: Step) -> dict[int, dict[str, Any]]:
    """Cold and warm requests per task at batch sizes 1 and 10 for stage-function ``kind``."""
    from infra.localstack.stack import reset_handler_state

    options = ctx.options
    plan = {1: options.request_warm_batches_1, 10: options.request_warm_batches_10}
    total = sum(size * (1 + warm) for size, warm in plan.items())
    spec = project_spec(f"bench requests {kind}", total)
    results: dict[int, dict[str, Any]] = {}
    with ctx.stack(spec, f"infra.bench.agents_plain:{kind}") as stack:
        step(f"requests {LABELS[kind]}: producer enqueues {total} tasks")
        summary = stack.producer_tick()
        enqueued = summary["totals"]["enqueued"]
        if enqueued != total:
            raise BenchError(f"the producer enqueued {enqueued} of {total} tasks")
        for size, warm_batches in plan.items():
            # A new execution environment: no runner, no Encord client, no cached project.
            reset_handler_state()
            poller = stack.poller(
                batch_size=size, batching_window_seconds=0.0, maximum_concurrency=1
            )
            step(f"requests {LABELS[kind]}: batch {size}, cold + {warm_batches} warm")
            cold = _invoke_counted(ctx, poller, size)
            warm = [_invoke_counted(ctx, poller, size) for _ in range(warm_batches)]
            warm_requests = sum(w["requests"] for w in warm)
            warm_records = sum(w["records"] for w in warm)
            warm_routes: dict[str, int] = {}
            for w in warm:
                for route, n in w["routes"].items():
                    warm_routes[route] = warm_routes.get(route, 0) + n
            results[size] = {
                "cold_per_task": cold["requests"] / cold["records"],
                "warm_per_task": warm_requests / warm_records if warm_records else None,
                "cold_routes": cold["routes"],
                "warm_routes": warm_routes,
                "warm_records": warm_records,
            }
    return results


def measure_baseline(ctx: BenchContext, kind: str, step: Step) -> dict[str, Any]:
    """Requests per task of the per-task way, on a freshly seeded identical project."""
    from encord.workflow.stages.agent import AgentStage

    from infra.bench.baselines import per_task_consume

    count = ctx.options.request_baseline_tasks
    step(f"requests {LABELS[kind]}: per-task baseline on {count} tasks")
    seeded = ctx.emulator.seed(project_spec(f"bench requests baseline {kind}", count))
    client = ctx.emulator.user_client()
    project = client.get_project(seeded.project_hash)
    stage = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    tasks = list(stage.get_tasks())
    before = ctx.encord_requests()
    for task in tasks:
        per_task_consume(project, stage, task.model_dump_json(), kind)
    routes = diff(ctx.encord_requests(), before)
    left = ctx.emulator.state.stage_counts(seeded.project_hash)["Agent 1"]
    if left:
        raise BenchError(f"the per-task baseline left {left} task(s) in the stage")
    return {"per_task": sum(routes.values()) / len(tasks), "routes": routes, "tasks": len(tasks)}


def run(ctx: BenchContext, step: Step) -> list[Row]:
    rows: list[Row] = []
    for kind in ctx.options.request_kinds:
        kit = measure_kit(ctx, kind, step)
        base = measure_baseline(ctx, kind, step)
        label = LABELS[kind]
        for size in (1, 10):
            target = LABEL_ROW_BATCH10_TARGET if (kind, size) == ("label_row", 10) else None
            rows.append(
                Row(
                    section=SECTION,
                    key=f"requests.{kind}.batch{size}.warm",
                    metric=f"Encord requests/task {label}, batch {size}, warm",
                    unit="req/task",
                    kit=kit[size]["warm_per_task"],
                    baseline=base["per_task"],
                    baseline_label="one task at a time (SDK calls per task)",
                    target=target,
                    details={"kit_routes": kit[size]["warm_routes"], "baseline": base},
                )
            )
        for size in (1, 10):
            rows.append(
                Row(
                    section=SECTION,
                    key=f"requests.{kind}.batch{size}.cold",
                    metric=f"Encord requests/task {label}, batch {size}, cold",
                    unit="req/task",
                    kit=kit[size]["cold_per_task"],
                    note="first invocation: fetches the project and its ontology",
                    details={"kit_routes": kit[size]["cold_routes"]},
                )
            )
    return rows
