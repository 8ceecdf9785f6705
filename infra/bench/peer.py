"""7. Against the released peer, encord-agents 0.2.10, on its own ground.

The peer is installed in an environment of its own on first use (``peer_env``) and runs in
subprocesses (``peer_worker``) against the same emulator, with ``latency_ms`` injected on every
Encord API route where time is measured. Every row prints the kit's figure, the peer's and their
ratio:

* **Encord requests per task, producer + consumer**, for the four stage functions (a)-(d), no
  latency (counts do not depend on it). Kit: one producer tick, then the consumer drains the
  queue at the template's batch size (and at each size of ``peer_count_batches``), runner
  already loaded as in a started environment. Peer: its sequential ``Runner`` at its default
  ``task_batch_size`` of 300; its ``QueueRunner`` recipe (list the stage, call the wrapped
  function) fed lists of 10, and one task per message, runner already constructed.
* **AWS calls per task** (DynamoDB, and SQS apart from the event-source mapping's receives and
  deletes), counted where they arrive, on the moto server (``worker.CountingApp``).
* **Tasks/s** at each model-call time and each consumer concurrency, the median of
  ``peer_repeats`` runs: the kit's producer tick with the poller consuming as it enqueues, each
  concurrency slot a warm consumer process (``lambdas.ProcessPool``), against the peer's
  ``Runner`` (constructed, project fetched, before its clock starts). Also the consumers'
  threads started per batch and their handler time (the Lambda GB-seconds of the cost model).
* **Batch size**: the consumers alone (queue filled by an untimed tick first) at the template's
  concurrency with larger batches (window ``peer_sweep_window``) at each sweep model time:
  tasks/s, Encord requests and DynamoDB calls per task, handler seconds per invocation; from
  these the default is chosen.
* **The producer tick's timeline**: one tick over ``peer_timeline_tasks`` tasks with latency, each
  Encord request and AWS call timed in this process (``timeline``).

``cost`` turns the measured per-task counts into the cost of 100,000 tasks; ``plot`` draws the
tasks/s and requests/task figure.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from infra.bench.agents_plain import MODEL_MS_ENV
from infra.bench.common import (
    ENCORD_API_ROUTES,
    REPO,
    BenchContext,
    BenchError,
    Step,
    diff,
    fault,
    project_spec,
    worker_env,
)
from infra.bench.encord_requests import LABELS
from infra.bench.lambdas import ProcessPool
from infra.bench.results import Row, Target
from infra.bench.throughput import _tick_while_polling

SECTION = "7 peer"
PEER = "encord-agents 0.2.10"
# The goals (issue 14), as targets on the rows they bound.
REQUESTS_TARGET = Target("ratio_max", 1.0)  # <= the peer's Runner at its default batch
DYNAMODB_TARGET = Target("max", 1.0, "calls/task")
C1_TARGET = Target("ratio_min", 0.9)  # within 10% of the peer at concurrency 1, 200 ms
AHEAD_TARGET = Target("ratio_min", 1.0)  # ahead at concurrency >= 2, model >= 50 ms
TEMPLATE_TARGET = Target("ratio_min", 4.0)  # >= 4x at the template's concurrency, 200 ms
# The event-source mapping's own SQS calls (and the local poller's drained checks): Lambda's
# pollers make them on AWS too, but they belong to the harness, not to the handlers.
ESM_SQS_OPS = ("ReceiveMessage", "DeleteMessageBatch", "DeleteMessage", "GetQueueAttributes")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


# -- counting --------------------------------------------------------------------------------


def aws_summary(calls: Mapping[str, int], tasks: int) -> dict[str, Any]:
    """Per-task AWS figures from server-side counts: DynamoDB calls and write units (a batched
    or transactional item is a unit; a transactional write bills two), the handlers' SQS calls,
    and the event-source mapping's."""
    dynamodb = {k: n for k, n in calls.items() if k.startswith("dynamodb.") and "#" not in k}
    sqs = {k.split(".", 1)[1]: n for k, n in calls.items() if k.startswith("sqs.")}
    write_units = read_units = 0
    for name, count in dynamodb.items():
        op = name.split(".", 1)[1]
        items = calls.get(f"{name}#items", 0)
        if op == "TransactWriteItems":
            write_units += 2 * items
        elif op == "BatchWriteItem":
            write_units += items
        elif op in DYNAMODB_WRITES:
            write_units += count
        elif op == "TransactGetItems":
            read_units += 2 * items
        elif op == "BatchGetItem":
            read_units += items
        elif op in ("GetItem", "Query", "Scan"):
            # Items under 4 KB; a Query of a few small items is one unit.
            read_units += count
    handler_sqs = sum(n for op, n in sqs.items() if op not in ESM_SQS_OPS)
    esm_sqs = sum(n for op, n in sqs.items() if op in ESM_SQS_OPS)
    per = 1 / tasks if tasks else 0.0
    return {
        "dynamodb_calls_per_task": sum(dynamodb.values()) * per,
        "dynamodb_write_units_per_task": write_units * per,
        "dynamodb_read_units_per_task": read_units * per,
        "sqs_handler_calls_per_task": handler_sqs * per,
        "sqs_esm_calls_per_task": esm_sqs * per,
        "calls": dict(calls),
    }


@contextlib.contextmanager
def counting(ctx: BenchContext) -> Iterator[dict[str, Any]]:
    """Encord and AWS requests made inside the block: ``counts["encord"]``, ``counts["aws"]``."""
    counts: dict[str, Any] = {}
    encord, aws = ctx.encord_requests(), ctx.aws_requests()
    yield counts
    counts["encord"] = diff(ctx.encord_requests(), encord)
    counts["aws"] = diff(ctx.aws_requests(), aws)


# -- the peer --------------------------------------------------------------------------------


def run_peer(
    ctx: BenchContext,
    mode: str,
    kind: str,
    tasks: int,
    batch_size: int,
    *,
    model_ms: float | None = None,
    latency_ms: float = 0.0,
) -> dict[str, Any]:
    """The peer's ``mode`` ("runner" | "queue") over a freshly seeded project of ``tasks``.

    Encord requests are counted from the worker's ``go`` (runner constructed) to its result.
    """
    from infra.bench.peer_env import ensure_peer

    python = ensure_peer()
    emulator = ctx.emulator
    seeded = emulator.seed(project_spec(f"bench peer {mode} {kind} {batch_size}", tasks))
    request = {
        "mode": mode,
        "kind": kind,
        "project_hash": seeded.project_hash,
        "batch_size": batch_size,
        "model_ms": model_ms,
    }
    env = worker_env(
        ENCORD_DOMAIN=emulator.domain,
        ENCORD_SSH_KEY_FILE=str(emulator.ssh_key_path),
        ENCORD_SSH_KEY=None,
        PYTHONPATH=str(REPO),
        VIRTUAL_ENV=None,
    )
    timeout = ctx.options.e2e_timeout_seconds
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [str(python), "-m", "infra.bench.peer_worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            bufsize=1,
        )
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            _read_reply(process, timeout, errors)
            latency = (
                fault(emulator, endpoint=ENCORD_API_ROUTES, latency_ms=latency_ms)
                if latency_ms
                else contextlib.nullcontext()
            )
            with latency, counting(ctx) as counts:
                process.stdin.write("go\n")
                process.stdin.flush()
                result = _read_reply(process, timeout, errors)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
    done = emulator.state.stage_counts(seeded.project_hash)["Complete"]
    if done != tasks:
        raise BenchError(f"the peer's {mode} completed {done} of {tasks} tasks")
    requests = sum(counts["encord"].values())
    return {
        **result,
        "tasks": tasks,
        "tasks_per_second": tasks / result["seconds"],
        "encord_requests": requests,
        "encord_per_task": requests / tasks,
        "encord_routes": counts["encord"],
    }


def _read_reply(process: subprocess.Popen[str], timeout: float, errors: Any) -> dict[str, Any]:
    box: list[str] = []
    reader = threading.Thread(
        target=lambda: box.append(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        process.kill()
        errors.seek(0)
        tail = "\n".join(errors.read().strip().splitlines()[-12:])
        raise BenchError(f"the peer worker gave no answer within {timeout:.0f} s:\n{tail}")
    reply: dict[str, Any] = json.loads(box[0])
    return reply


# -- the kit ---------------------------------------------------------------------------------


def kit_counts(ctx: BenchContext, kind: str, tasks: int, batch_size: int) -> dict[str, Any]:
    """Requests per task of one producer tick, then the consumer draining at ``batch_size``,
    counted apart; no latency, one consumer, the runner loaded beforehand."""
    from agent_core.pipeline.loader import get_runner
    from agent_core.settings import PipelineSettings

    with ctx.stack(
        project_spec(f"bench peer counts {kind} {batch_size}", tasks),
        f"infra.bench.agents_plain:{kind}",
    ) as stack:
        # A started environment: project, workflow and ontology already fetched.
        get_runner(PipelineSettings())
        with counting(ctx) as produced:
            summary = stack.producer_tick()
        enqueued = summary["totals"]["enqueued"]
        if enqueued != tasks:
            raise BenchError(f"the producer enqueued {enqueued} of {tasks} tasks")
        with counting(ctx) as consumed:
            stats = stack.drain(
                timeout_seconds=ctx.options.e2e_timeout_seconds,
                batch_size=batch_size,
                # Lambda fills a batch above 10 within the window; a full queue fills it at once.
                batching_window_seconds=1.0,
                maximum_concurrency=1,
            )
        done = ctx.emulator.state.stage_counts(stack.project_hash)["Complete"]
    if done != tasks or not stats.drained:
        raise BenchError(f"the kit completed {done} of {tasks} tasks at batch {batch_size}")
    producer = sum(produced["encord"].values()) / tasks
    consumer = sum(consumed["encord"].values()) / tasks
    aws_total = Counter(produced["aws"]) + Counter(consumed["aws"])
    return {
        "batch_size": batch_size,
        "encord_per_task": producer + consumer,
        "producer_encord_per_task": producer,
        "consumer_encord_per_task": consumer,
        "producer_routes": produced["encord"],
        "consumer_routes": consumed["encord"],
        "producer_aws": aws_summary(produced["aws"], tasks),
        "consumer_aws": aws_summary(consumed["aws"], tasks),
        "aws": aws_summary(aws_total, tasks),
        "invocations": stats.invocations,
    }


def kit_run(
    ctx: BenchContext,
    pool: ProcessPool,
    tasks: int,
    model_ms: float,
    concurrency: int,
    *,
    batch_size: int | None = None,
    window_seconds: float | None = None,
    prefill: bool = False,
) -> dict[str, Any]:
    """One end-to-end run: producer tick while ``concurrency`` warm consumer processes drain.

    With ``prefill`` the tick runs first, untimed, and only the consumers' drain of the full
    queue is timed and counted: what a batch size does to the consumer alone (with the tick
    overlapped, batches larger than what the producer enqueues within the window never fill).
    """
    options = ctx.options
    spec = project_spec(f"bench peer e2e {model_ms:g} ms c{concurrency} b{batch_size}", tasks)
    env = {MODEL_MS_ENV: f"{model_ms:g}"}
    with ctx.stack(spec, "infra.bench.agents_plain:pipeline", extra_env=env) as stack:
        shape = stack.shape
        batch = batch_size or shape.batch_size
        window = shape.maximum_batching_window_seconds if window_seconds is None else window_seconds
        finished: list[float] = []
        began = time.perf_counter()
        pool.configure(stack.env, concurrency)
        pool_seconds = time.perf_counter() - began
        with fault(ctx.emulator, endpoint=ENCORD_API_ROUTES, latency_ms=options.latency_ms):
            poller = stack.poller(
                batch_size=batch,
                batching_window_seconds=window,
                maximum_concurrency=concurrency,
                invoke_wrapper=pool.invoke,
                on_invocation=lambda _report: finished.append(time.perf_counter()),
            )
            if prefill:
                began = time.perf_counter()
                tick = stack.producer_tick()
                tick_seconds = time.perf_counter() - began
                with counting(ctx) as counts:
                    started = time.perf_counter()
                    poller.drain(timeout_seconds=options.e2e_timeout_seconds)
                    seconds = max(finished, default=time.perf_counter()) - started
            else:
                with counting(ctx) as counts:
                    started = time.perf_counter()
                    tick, tick_seconds = _tick_while_polling(stack, poller, started, options)
                    seconds = max(finished, default=time.perf_counter()) - started
            invocations = pool.invocation_records
            stats = poller.stats
        done = ctx.emulator.state.stage_counts(stack.project_hash)["Complete"]
    if done != tasks or stats.handler_errors:
        raise BenchError(
            f"the kit completed {done} of {tasks} tasks (model {model_ms:g} ms, concurrency "
            f"{concurrency}, batch {batch}; handler errors {stats.handler_errors}: "
            f"{stats.errors[-3:]})"
        )
    handler_seconds = sum(i["seconds"] for i in invocations)
    return {
        "tasks": tasks,
        "model_ms": model_ms,
        "concurrency": concurrency,
        "batch_size": batch,
        "window_seconds": window,
        "seconds": seconds,
        "pool_start_seconds": pool_seconds,
        "tasks_per_second": tasks / seconds,
        "producer_tick_seconds": tick_seconds,
        "prefilled": prefill,
        "producer_totals": tick.get("totals"),
        "invocations": len(invocations),
        "records_per_invocation": tasks / max(1, len(invocations)),
        "handler_seconds_per_task": handler_seconds / tasks,
        "handler_seconds_per_invocation": handler_seconds / max(1, len(invocations)),
        "threads_per_invocation": statistics.mean(i["threads"] for i in invocations)
        if invocations
        else 0.0,
        "encord_per_task": sum(counts["encord"].values()) / tasks,
        "aws": aws_summary(counts["aws"], tasks),
    }


# -- the grid --------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def measure_requests(ctx: BenchContext, step: Step, template_batch: int) -> dict[str, Any]:
    options = ctx.options
    tasks = options.peer_count_tasks
    out: dict[str, Any] = {}
    for kind in options.request_kinds:
        entry: dict[str, Any] = {"kit": {}, "peer": {}}
        for batch in dict.fromkeys((template_batch, *options.peer_count_batches)):
            step(f"peer: (kit) Encord/AWS requests {LABELS[kind]}, batch {batch}, {tasks} tasks")
            entry["kit"][batch] = kit_counts(ctx, kind, tasks, batch)
        for mode, size, name in (
            ("runner", 300, "runner"),
            ("queue", 10, "queue10"),
            ("queue", 1, "queue1"),
        ):
            step(f"peer: ({PEER}) {name} {LABELS[kind]}, {tasks} tasks")
            entry["peer"][name] = run_peer(ctx, mode, kind, tasks, size)
        out[kind] = entry
    return out


def measure_throughput(
    ctx: BenchContext, step: Step, pool: ProcessPool, template_concurrency: int
) -> dict[str, Any]:
    options = ctx.options
    concurrencies = sorted({*options.peer_concurrency, template_concurrency})
    grid: dict[str, Any] = {}
    for model_ms in options.peer_model_ms:
        tasks = options.peer_tasks_for(model_ms)
        kit: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrencies}
        peer: list[dict[str, Any]] = []
        for repeat in range(options.peer_repeats):
            for concurrency in concurrencies:
                step(
                    f"peer: (kit) {tasks} tasks, {model_ms:g} ms model, concurrency "
                    f"{concurrency}, run {repeat + 1}/{options.peer_repeats}"
                )
                kit[concurrency].append(kit_run(ctx, pool, tasks, model_ms, concurrency))
            step(f"peer: ({PEER}) Runner, {tasks} tasks, {model_ms:g} ms model, run {repeat + 1}")
            peer.append(
                run_peer(
                    ctx,
                    "runner",
                    "pipeline",
                    tasks,
                    300,
                    model_ms=model_ms,
                    latency_ms=options.latency_ms,
                )
            )
        grid[f"{model_ms:g}"] = {
            "model_ms": model_ms,
            "tasks": tasks,
            "peer_runs": peer,
            "peer_tasks_per_second": _median(peer, "tasks_per_second"),
            "kit": {
                str(c): {
                    "runs": runs,
                    "tasks_per_second": _median(runs, "tasks_per_second"),
                    "dynamodb_calls_per_task": statistics.median(
                        r["aws"]["dynamodb_calls_per_task"] for r in runs
                    ),
                    "threads_per_invocation": _median(runs, "threads_per_invocation"),
                    "handler_seconds_per_task": _median(runs, "handler_seconds_per_task"),
                    "encord_per_task": _median(runs, "encord_per_task"),
                }
                for c, runs in kit.items()
            },
        }
    return {"concurrencies": concurrencies, "by_model": grid}


def measure_batches(
    ctx: BenchContext, step: Step, pool: ProcessPool, template_concurrency: int
) -> list[dict[str, Any]]:
    options = ctx.options
    rows: list[dict[str, Any]] = []
    for model_ms in options.peer_sweep_model_ms:
        for batch in options.peer_sweep_batches:
            tasks = options.peer_sweep_tasks
            step(f"peer: (kit) batch {batch}, {model_ms:g} ms model, {tasks} tasks")
            rows.append(
                kit_run(
                    ctx,
                    pool,
                    tasks,
                    model_ms,
                    template_concurrency,
                    batch_size=batch,
                    window_seconds=options.peer_sweep_window,
                    prefill=True,
                )
            )
    return rows


def measure_timeline(ctx: BenchContext, step: Step) -> dict[str, Any]:
    from infra.bench.timeline import Timeline

    tasks = ctx.options.peer_timeline_tasks
    spec = project_spec("bench peer producer timeline", tasks)
    with ctx.stack(spec, "infra.bench.agents_plain:label_row") as stack:
        step(f"peer: producer tick timeline, {tasks} tasks, {ctx.options.latency_ms:g} ms latency")
        with (
            fault(ctx.emulator, endpoint=ENCORD_API_ROUTES, latency_ms=ctx.options.latency_ms),
            Timeline() as timeline,
        ):
            summary = stack.producer_tick()
    if summary["totals"]["enqueued"] != tasks:
        raise BenchError(f"the timed producer tick enqueued {summary['totals']} of {tasks}")
    return {"tasks": tasks, **timeline.summary()}


def measure(ctx: BenchContext, step: Step) -> dict[str, Any]:
    from infra.template_config import load_template_config

    config = load_template_config()
    parameters = config.parameters
    template_concurrency = config.maximum_concurrency
    template = {
        "batch_size": config.batch_size,
        "window_seconds": float(config.maximum_batching_window_seconds),
        "concurrency": template_concurrency,
        "consumer_memory_mb": int(parameters.get("ConsumerMemorySize") or 1024),
        "producer_memory_mb": int(parameters.get("ProducerMemorySize") or 512),
    }
    options = ctx.options
    size = max(*options.peer_concurrency, template_concurrency)
    step(f"peer: starting {size} consumer environments (reused by every run)")
    # Started outside any stack, so not warmed: each run configures and warms them.
    with ProcessPool(size, worker_env(), warm=False) as pool:
        throughput = measure_throughput(ctx, step, pool, template_concurrency)
        batches = measure_batches(ctx, step, pool, template_concurrency)
    return {
        "template": template,
        "requests": measure_requests(ctx, step, config.batch_size),
        "throughput": throughput,
        "batches": batches,
        "timeline": measure_timeline(ctx, step),
    }


# -- rows ------------------------------------------------------------------------------------


def rows_from(data: dict[str, Any]) -> list[Row]:
    from infra.bench.cost import cost_model

    rows: list[Row] = []
    template = data["template"]
    for kind, entry in data["requests"].items():
        kit = entry["kit"][template["batch_size"]]
        best_batch = min(entry["kit"], key=lambda b: entry["kit"][b]["encord_per_task"])
        for name, label in (
            ("runner", "sequential Runner, batch 300"),
            ("queue10", "QueueRunner fed lists of 10"),
            ("queue1", "QueueRunner, one task per message"),
        ):
            rows.append(
                Row(
                    section=SECTION,
                    key=f"peer.requests.{kind}.{name}",
                    metric=f"Encord requests/task, producer + consumer, {LABELS[kind]} "
                    f"(kit: batch {template['batch_size']})",
                    unit="req/task",
                    kit=kit["encord_per_task"],
                    baseline=entry["peer"][name]["encord_per_task"],
                    baseline_label=f"{PEER} {label}",
                    target=REQUESTS_TARGET if name == "runner" else None,
                    note=f"kit {kit['producer_encord_per_task']:.3f} producer + "
                    f"{kit['consumer_encord_per_task']:.3f} consumer",
                    details={"kit": kit, "peer": entry["peer"][name]},
                )
            )
        best = entry["kit"][best_batch]
        rows.append(
            Row(
                section=SECTION,
                key=f"peer.requests.{kind}.best_batch",
                metric=f"Encord requests/task, producer + consumer, {LABELS[kind]} "
                f"(kit: batch {best_batch})",
                unit="req/task",
                kit=best["encord_per_task"],
                baseline=entry["peer"]["runner"]["encord_per_task"],
                baseline_label=f"{PEER} sequential Runner, batch 300",
                target=REQUESTS_TARGET,
                details={"kit": best},
            )
        )
    counts = data["requests"]
    kind = "label_row" if "label_row" in counts else next(iter(counts))
    aws = counts[kind]["kit"][template["batch_size"]]
    rows.append(
        Row(
            section=SECTION,
            key="peer.dynamodb_calls_per_task",
            metric=f"DynamoDB calls/task, producer + consumer, {LABELS[kind]}, batch "
            f"{template['batch_size']}",
            unit="calls/task",
            kit=aws["aws"]["dynamodb_calls_per_task"],
            baseline=0.0,
            baseline_label=f"{PEER}: no lease table (no guard against double runs)",
            target=DYNAMODB_TARGET,
            note=f"producer {aws['producer_aws']['dynamodb_calls_per_task']:.2f} + consumer "
            f"{aws['consumer_aws']['dynamodb_calls_per_task']:.2f}; write units/task "
            f"{aws['aws']['dynamodb_write_units_per_task']:.2f}",
            details={"calls": aws["aws"]["calls"]},
        )
    )
    grid = data["throughput"]
    top = max(grid["concurrencies"])
    for model_key, entry in grid["by_model"].items():
        model_ms = entry["model_ms"]
        for concurrency in grid["concurrencies"]:
            kit_entry = entry["kit"][str(concurrency)]
            target = None
            if concurrency == template["concurrency"] and model_ms >= 200:
                target = TEMPLATE_TARGET
            elif concurrency == 1 and model_ms >= 200:
                target = C1_TARGET
            elif concurrency >= 2 and model_ms >= 50:
                target = AHEAD_TARGET
            rows.append(
                Row(
                    section=SECTION,
                    key=f"peer.tps.model{model_key}ms.c{concurrency}",
                    metric=f"Tasks/s, {model_key} ms model call, concurrency {concurrency}"
                    f"{' (template)' if concurrency == template['concurrency'] else ''}, "
                    f"{entry['tasks']} tasks",
                    unit="tasks/s",
                    kit=kit_entry["tasks_per_second"],
                    baseline=entry["peer_tasks_per_second"],
                    baseline_label=f"{PEER} sequential Runner, batch 300",
                    target=target,
                    note=f"median of {len(kit_entry['runs'])}; batch {template['batch_size']}; "
                    f"{kit_entry['threads_per_invocation']:.0f} threads/batch",
                    details={"kit": kit_entry, "peer_runs": entry["peer_runs"]}
                    if concurrency == top
                    else {"kit": kit_entry},
                )
            )
    for run in data["batches"]:
        rows.append(
            Row(
                section=SECTION,
                key=f"peer.batch{run['batch_size']}.model{run['model_ms']:g}ms",
                metric=f"Consumers alone, batch {run['batch_size']} (window "
                f"{run['window_seconds']:g} s), {run['model_ms']:g} ms model, concurrency "
                f"{run['concurrency']}, {run['tasks']} tasks: tasks/s",
                unit="tasks/s",
                kit=run["tasks_per_second"],
                note=f"{run['encord_per_task']:.3f} Encord req/task, "
                f"{run['aws']['dynamodb_calls_per_task']:.2f} DynamoDB calls/task, "
                f"{run['handler_seconds_per_invocation']:.1f} s/invocation",
                details=run,
            )
        )
    timeline = data["timeline"]
    rows.append(
        Row(
            section=SECTION,
            key="peer.producer_tick",
            metric=f"Producer tick, {timeline['tasks']} tasks: wall time",
            unit="s",
            kit=timeline["seconds"],
            note="; ".join(
                f"{op} {v['count']}x {100 * v['busy_fraction']:.0f}%"
                for op, v in list(timeline["by_operation"].items())[:6]
            ),
            details=timeline,
        )
    )
    cost = cost_model(data)
    rows.append(
        Row(
            section=SECTION,
            key="peer.cost_100k",
            metric="Cost of 100,000 tasks, 200 ms model call (Lambda + SQS + DynamoDB)",
            unit="USD",
            kit=cost["kit"]["total_usd"],
            baseline=cost["peer"]["usd_for_the_run"],
            baseline_label=f"{PEER} Runner on one always-on {cost['peer']['instance']}, "
            "hours the run takes",
            note=f"the instance always on: {cost['peer']['usd_per_month']:.2f} USD/month",
            details=cost,
        )
    )
    return rows


def run(ctx: BenchContext, step: Step) -> list[Row]:
    data = measure(ctx, step)
    rows = rows_from(data)
    if ctx.options.plot_path is not None:
        from infra.bench.plot import plot

        step(f"peer: plotting {ctx.options.plot_path}")
        plot(data, ctx.options.plot_path)
    # Everything measured, for the report and the plot (rows carry only their own part).
    rows[-1].details["measured"] = data
    return rows
