"""3. Consumer CPU time per task, and end-to-end throughput of the local stack.

CPU: the producer enqueues a project's tasks; the events are handed, in batches of 10, to the
real consumer handler in a fresh interpreter (``worker consume``), which takes ``process_time``
around each invocation; its first invocation (the runner and client being created) is the
warm-up and is left out. Without injected latency. The baseline is the per-task consumer, timed
the same way in its own interpreter (first task left out). Only the worker's CPU is counted: the
emulator and moto run in this process.

Throughput: with ``latency_ms`` injected on every Encord API route, one producer tick plus the
local poller draining the queue with the template's batch size, batching window and concurrency,
against agent_core's sequential ``Runner`` on an identical freshly seeded project. Both run the same
stage function: a model call (``model_ms`` of waiting, as for a remote inference endpoint) per task,
a label change, a save and a pathway.
"""

from __future__ import annotations

import contextlib
import os
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
from infra.bench.results import Row, Target

SECTION = "3 throughput"
THROUGHPUT_TARGET = Target("ratio_min", 3.0)


def cpu_per_task(ctx: BenchContext, step: Step) -> dict[str, Any]:
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
        raise BenchError(f"consumer reported failures: {invocations}")
    warm = invocations[1:]
    kit_ms = 1000 * sum(i["cpu_seconds"] for i in warm) / sum(i["records"] for i in warm)

    seeded = ctx.emulator.seed(project_spec("bench cpu baseline", 1 + 10 * batches))
    from encord.workflow.stages.agent import AgentStage

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


def end_to_end(ctx: BenchContext, step: Step) -> dict[str, Any]:
    from agent_core.runner import Runner
    from agent_core.settings import create_user_client

    options = ctx.options
    tasks = options.e2e_tasks
    env = {MODEL_MS_ENV: str(options.model_ms)}
    spec = project_spec("bench e2e", tasks)
    with ctx.stack(spec, "infra.bench.agents_plain:pipeline", extra_env=env) as stack:
        emulator = ctx.emulator
        shape = stack.shape
        with fault(emulator, endpoint=ENCORD_API_ROUTES, latency_ms=options.latency_ms):
            step(
                f"e2e: producer tick + poller (batch {shape.batch_size}, concurrency "
                f"{shape.maximum_concurrency}) on {tasks} tasks"
            )
            started = time.perf_counter()
            stack.producer_tick()
            stats = stack.drain(timeout_seconds=options.e2e_timeout_seconds)
            kit_seconds = time.perf_counter() - started
        done = emulator.state.stage_counts(stack.project_hash)["Complete"]
        if done != tasks or not stats.drained:
            raise BenchError(
                f"the local stack completed {done} of {tasks} tasks (drained: {stats.drained}; "
                f"errors: {stats.errors[-3:]})"
            )

        seeded = emulator.seed(project_spec("bench e2e baseline", tasks))
        runner = Runner(project_hash=seeded.project_hash, client=create_user_client())
        runner.stage(STAGE)(pipeline_stage)
        with fault(emulator, endpoint=ENCORD_API_ROUTES, latency_ms=options.latency_ms):
            step(f"e2e: sequential Runner on {tasks} tasks")
            started = time.perf_counter()
            # The Runner draws its own progress bar on stdout; the bench has one already.
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                runner(num_retries=0)
            runner_seconds = time.perf_counter() - started
        done = emulator.state.stage_counts(seeded.project_hash)["Complete"]
        if done != tasks:
            raise BenchError(f"the sequential Runner completed {done} of {tasks} tasks")
    return {
        "kit_tasks_per_second": tasks / kit_seconds,
        "runner_tasks_per_second": tasks / runner_seconds,
        "kit_seconds": kit_seconds,
        "runner_seconds": runner_seconds,
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
    e2e = end_to_end(ctx, step)
    shape = e2e["shape"]
    return [
        Row(
            section=SECTION,
            key="throughput.consumer_cpu_ms_per_task",
            metric="Consumer CPU time per task, (b) label row, batch 10, warm",
            unit="ms",
            kit=cpu["kit_ms"],
            baseline=cpu["baseline_ms"],
            baseline_label="one task at a time",
            note=f"first invocation (runner + client created): "
            f"{cpu['kit_first_invocation_cpu_ms']:.0f} ms for 10 tasks",
            details=cpu,
        ),
        Row(
            section=SECTION,
            key="throughput.end_to_end_tasks_per_second",
            metric=f"End-to-end tasks/s, {options.e2e_tasks} tasks, {options.latency_ms:g} ms "
            f"Encord latency, {options.model_ms:g} ms model call",
            unit="tasks/s",
            kit=e2e["kit_tasks_per_second"],
            baseline=e2e["runner_tasks_per_second"],
            baseline_label="sequential Runner",
            target=THROUGHPUT_TARGET,
            note=f"producer tick + poller: batch {shape['batch_size']}, window "
            f"{shape['batching_window_seconds']:g} s, concurrency {shape['maximum_concurrency']}",
            details=e2e,
        ),
    ]
