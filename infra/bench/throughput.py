"""3. Consumer CPU time per task, and end-to-end throughput of the local stack.

CPU: the producer enqueues a project's tasks; the events are handed, in batches of 10, to the
real consumer handler in a fresh interpreter (``worker consume``), which takes ``process_time``
around each invocation; its first invocation (runner and clients being created) is the warm-up
and is left out. No latency is injected. The baseline is the per-task consumer, timed the same
way in its own interpreter (first task left out). Only the worker's CPU counts: the emulator and
moto run in other processes.

Throughput: with ``latency_ms`` injected on every Encord API route, one producer tick while the
local poller consumes the queue with the template's batch size, batching window and concurrency
(as the event-source mapping does, it starts on the first messages while the producer still
lists the next page), until every task is done. Each concurrency slot is a warm interpreter of its own (``lambdas.ProcessPool``), as each Lambda
execution environment is; the clock stops when the last invocation returns. Against it,
agent_core's sequential ``Runner`` on an identical freshly seeded project, created (project
fetched) before its clock starts, as the pool's environments are. Both run the same stage
function per task: a model call (``model_ms`` of waiting, like a remote inference endpoint), a
label change, a save and a pathway. The pipeline's advantage grows with the time a task takes and
is bounded by the concurrency, so it is measured at each ``model_ms`` given.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from typing import Any

from infra.bench.agents_plain import MODEL_MS_ENV, pipeline_stage
from infra.bench.common import (
    ENCORD_API_ROUTES,
    STAGE,
    BenchContext,
    BenchError,
    Step,
    fault,
    project_spec,
    receive_events,
    run_worker,
    worker_env,
)
from infra.bench.lambdas import ProcessPool
from infra.bench.results import Row, Target

SECTION = "3 throughput"
THROUGHPUT_TARGET = Target("ratio_min", 3.0)


def cpu_per_task(ctx: BenchContext, step: Step) -> dict[str, Any]:
    from encord.workflow.stages.agent import AgentStage

    batches = ctx.options.cpu_batches
    tasks = 10 * (1 + batches)
    with ctx.stack(project_spec("bench cpu", tasks), "infra.bench.agents_plain:label_row") as stack:
        step(f"cpu: producer enqueues {tasks} tasks")
        stack.producer_tick()
        events = receive_events(stack, tasks, 10)
        step(f"cpu: consumer handler on {len(events)} batches of 10 (fresh interpreter)")
        result = run_worker("consume", {"events": events}, env=worker_env())
    invocations = result["invocations"]
    if any(i["failures"] for i in invocations):
        raise BenchError(f"the consumer reported failed records: {invocations}")
    warm = invocations[1:]
    kit_ms = 1000 * sum(i["cpu_seconds"] for i in warm) / sum(i["records"] for i in warm)

    seeded = ctx.emulator.seed(project_spec("bench cpu baseline", 1 + 10 * batches))
    project = ctx.emulator.user_client().get_project(seeded.project_hash)
    stage = project.workflow.get_stage(name=STAGE, type_=AgentStage)
    specs = [t.model_dump_json() for t in stage.get_tasks()]
    step(f"cpu: per-task baseline on {len(specs)} tasks (fresh interpreter)")
    env = worker_env(
        ENCORD_DOMAIN=ctx.emulator.domain,
        ENCORD_SSH_KEY_FILE=str(ctx.emulator.ssh_key_path),
        ENCORD_SSH_KEY=None,
        ENCORD_SSH_KEY_SECRET_ID=None,
    )
    base = run_worker(
        "per-task",
        {"project_hash": seeded.project_hash, "stage": STAGE, "kind": "label_row", "specs": specs},
        env=env,
    )
    base_tasks = base["tasks"][1:]
    base_ms = 1000 * sum(t["cpu_seconds"] for t in base_tasks) / len(base_tasks)
    return {
        "kit_ms": kit_ms,
        "baseline_ms": base_ms,
        "kit_first_invocation_cpu_ms": 1000 * invocations[0]["cpu_seconds"],
        "kit_invocations": invocations,
        "baseline_first_task_cpu_ms": 1000 * base["tasks"][0]["cpu_seconds"],
    }


def _tick_while_polling(
    stack: Any, poller: Any, started: float, options: Any
) -> tuple[dict[str, Any], float]:
    """One producer tick, with the poller consuming what it enqueues as it arrives.

    Lambda's event-source mapping polls all the time, so consumers start on the first page of
    tasks while the producer still works on the next. A poller whose ``drain`` takes
    ``stop_when`` keeps polling until the tick is over; an older one ends its drain whenever the
    queue is momentarily empty, so it is restarted until the tick is over and the queue drained.
    """
    outcome: dict[str, Any] = {}

    def produce() -> None:
        try:
            outcome["summary"] = stack.producer_tick()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        outcome["seconds"] = time.perf_counter() - started

    producer = threading.Thread(target=produce, name="bench-producer", daemon=True)
    producer.start()
    deadline = started + options.e2e_timeout_seconds
    if "stop_when" in inspect.signature(poller.drain).parameters:
        # A poller that keeps polling like the event-source mapping until told to stop.
        poller.drain(
            timeout_seconds=options.e2e_timeout_seconds,
            stop_when=lambda: not producer.is_alive(),
        )
    while time.perf_counter() < deadline:
        producer_done = not producer.is_alive()
        if producer_done and poller.is_drained():
            break
        stats = poller.drain(timeout_seconds=max(0.1, deadline - time.perf_counter()))
        if producer_done and stats.drained:
            break
    producer.join(timeout=max(1.0, deadline - time.perf_counter()))
    if "error" in outcome:
        raise BenchError(f"the producer tick failed: {outcome['error']}") from outcome["error"]
    if "summary" not in outcome:
        raise BenchError("the producer tick did not finish in time")
    summary: dict[str, Any] = outcome["summary"]
    return summary, float(outcome["seconds"])


def end_to_end(ctx: BenchContext, model_ms: float, step: Step) -> dict[str, Any]:
    from agent_core.runner import Runner
    from agent_core.settings import create_user_client

    options = ctx.options
    tasks = options.e2e_tasks
    emulator = ctx.emulator
    spec = project_spec(f"bench e2e {model_ms:g} ms", tasks)
    env = {MODEL_MS_ENV: f"{model_ms:g}"}
    with ctx.stack(spec, "infra.bench.agents_plain:pipeline", extra_env=env) as stack:
        shape = stack.shape
        finished: list[float] = []
        label = f"e2e ({model_ms:g} ms model call)"
        step(f"{label}: starting {shape.maximum_concurrency} warm consumer environments")
        with (
            ProcessPool(shape.maximum_concurrency, worker_env()) as pool,
            fault(emulator, endpoint=ENCORD_API_ROUTES, latency_ms=options.latency_ms),
        ):
            step(
                f"{label}: producer tick + poller (batch {shape.batch_size}, concurrency "
                f"{shape.maximum_concurrency}) on {tasks} tasks"
            )
            poller = stack.poller(
                invoke_wrapper=pool.invoke,
                on_invocation=lambda _report: finished.append(time.perf_counter()),
            )
            started = time.perf_counter()
            tick, tick_seconds = _tick_while_polling(stack, poller, started, options)
            # Until the last task is done: the poller's wait to see the queue stay empty (idle
            # workers' long polls) is not work Lambda does.
            kit_seconds = max(finished, default=time.perf_counter()) - started
            per_environment = pool.invocations
            stats = poller.stats
        done = emulator.state.stage_counts(stack.project_hash)["Complete"]
        if done != tasks or not stats.drained or stats.handler_errors:
            raise BenchError(
                f"the local stack completed {done} of {tasks} tasks (drained: {stats.drained}, "
                f"handler errors: {stats.handler_errors}, last errors: {stats.errors[-3:]})"
            )

        seeded = emulator.seed(project_spec(f"bench e2e baseline {model_ms:g} ms", tasks))
        runner = Runner(project_hash=seeded.project_hash, client=create_user_client())
        runner.stage(STAGE)(pipeline_stage)
        with fault(emulator, endpoint=ENCORD_API_ROUTES, latency_ms=options.latency_ms):
            step(f"{label}: sequential Runner on {tasks} tasks")
            started = time.perf_counter()
            # The Runner draws its own progress bar on stdout; the bench shows one already.
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                runner(num_retries=0)
            runner_seconds = time.perf_counter() - started
        done = emulator.state.stage_counts(seeded.project_hash)["Complete"]
        if done != tasks:
            raise BenchError(f"the sequential Runner completed {done} of {tasks} tasks")
    return {
        "model_ms": model_ms,
        "kit_tasks_per_second": tasks / kit_seconds,
        "runner_tasks_per_second": tasks / runner_seconds,
        "kit_seconds": kit_seconds,
        "producer_tick_seconds": tick_seconds,
        "producer_totals": tick.get("totals"),
        "runner_seconds": runner_seconds,
        "invocations_per_environment": per_environment,
        "poller": stats.as_dict(),
        "shape": {
            "batch_size": shape.batch_size,
            "batching_window_seconds": shape.maximum_batching_window_seconds,
            "maximum_concurrency": shape.maximum_concurrency,
        },
    }


def run(ctx: BenchContext, step: Step) -> list[Row]:
    options = ctx.options
    cpu = cpu_per_task(ctx, step)
    rows = [
        Row(
            section=SECTION,
            key="throughput.consumer_cpu_ms_per_task",
            metric="Consumer CPU time per task, (b) label row, batch 10, warm",
            unit="ms",
            kit=cpu["kit_ms"],
            baseline=cpu["baseline_ms"],
            baseline_label="one task at a time",
            note=f"first invocation (runner and clients created): "
            f"{cpu['kit_first_invocation_cpu_ms']:.0f} ms of CPU for its 10 tasks",
            details=cpu,
        )
    ]
    for index, model_ms in enumerate(options.model_ms):
        e2e = end_to_end(ctx, model_ms, step)
        shape = e2e["shape"]
        rows.append(
            Row(
                section=SECTION,
                key=f"throughput.end_to_end.model{model_ms:g}ms",
                metric=f"End-to-end tasks/s, {options.e2e_tasks} tasks, {model_ms:g} ms model "
                f"call per task, {options.latency_ms:g} ms Encord latency",
                unit="tasks/s",
                kit=e2e["kit_tasks_per_second"],
                baseline=e2e["runner_tasks_per_second"],
                baseline_label="sequential Runner",
                target=THROUGHPUT_TARGET if index == 0 else None,
                note=f"batch {shape['batch_size']}, concurrency {shape['maximum_concurrency']}; "
                f"producer tick {e2e['producer_tick_seconds']:.1f} s of "
                f"{e2e['kit_seconds']:.1f} s",
                details=e2e,
            )
        )
    return rows
