"""2. Producer: Encord and AWS calls per 1,000 tasks.

The real producer handler runs once (a cold scheduled invocation) over a freshly seeded project
whose stage function reads the label row, so the envelopes carry label-row metadata. SQS and
DynamoDB calls are counted with a botocore event hook on the handler's own clients, Encord
requests by the emulator. The baseline lists the same stage of an identical project and sends one
``SendMessage`` per task (the per-message producer). Each side gets its own queue, deleted
afterwards, so moto never holds more than one run's messages.
"""

from __future__ import annotations

import uuid

from infra.bench.common import BenchContext, BenchError, CallCounter, Step, diff, project_spec
from infra.bench.results import Row, Target

SECTION = "2 producer"
PER = 1000
# SendMessageBatch carries 10 messages: at least 10x fewer SQS calls than one per message.
SQS_TARGET = Target("ratio_max", 0.1)


def measure_kit(ctx: BenchContext, tasks: int, step: Step) -> dict[str, object]:
    from agent_core.pipeline.clients import dynamodb_client, sqs_client

    spec = project_spec("bench producer", tasks)
    with ctx.stack(spec, "infra.bench.agents_plain:label_row") as stack:
        counter = CallCounter()
        # The handler reuses these cached clients (same endpoint and region).
        counter.attach(sqs_client())
        counter.attach(dynamodb_client())
        step(f"producer: kit enqueues {tasks} tasks")
        before = ctx.encord_requests()
        summary = stack.producer_tick()
        routes = diff(ctx.encord_requests(), before)
        enqueued = summary["totals"]["enqueued"]
        if enqueued != tasks:
            raise BenchError(f"the producer enqueued {enqueued} of {tasks} tasks")
        depth = stack.queue_depth()
        if depth != tasks:
            raise BenchError(f"{depth} messages on the work queue after enqueueing {tasks}")
        return {
            "encord": sum(routes.values()),
            "encord_routes": routes,
            "sqs": counter.total("sqs"),
            "dynamodb": counter.total("dynamodb"),
            "calls": counter.snapshot(),
            "summary": summary["totals"],
        }


def measure_baseline(ctx: BenchContext, tasks: int, step: Step) -> dict[str, object]:
    from infra.bench.baselines import per_message_produce

    seeded = ctx.emulator.seed(project_spec("bench producer baseline", tasks))
    client = ctx.emulator.user_client()
    sqs = ctx.moto.client("sqs")
    counter = CallCounter()
    queue_url = sqs.create_queue(QueueName=f"agentkit-bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    counter.attach(sqs)
    step(f"producer: per-message baseline enqueues {tasks} tasks")
    try:
        before = ctx.encord_requests()
        project = client.get_project(seeded.project_hash)
        sent = per_message_produce(project, sqs.send_message, queue_url)
        routes = diff(ctx.encord_requests(), before)
        sqs_calls = counter.total("sqs")
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
    if sent != tasks:
        raise BenchError(f"the baseline sent {sent} of {tasks} tasks")
    return {"encord": sum(routes.values()), "encord_routes": routes, "sqs": sqs_calls}


def run(ctx: BenchContext, step: Step) -> list[Row]:
    tasks = ctx.options.producer_tasks
    kit = measure_kit(ctx, tasks, step)
    base = measure_baseline(ctx, tasks, step)
    scale = PER / tasks

    def per(value: object) -> float:
        return float(value) * scale  # type: ignore[arg-type]

    note = f"measured on {tasks} tasks" if tasks != PER else ""
    return [
        Row(
            section=SECTION,
            key="producer.sqs_calls",
            metric="Producer SQS calls per 1,000 tasks",
            unit="calls",
            kit=per(kit["sqs"]),
            baseline=per(base["sqs"]),
            baseline_label="SendMessage per task",
            target=SQS_TARGET,
            note=note,
            details={"kit": kit, "baseline": base},
        ),
        Row(
            section=SECTION,
            key="producer.encord_requests",
            metric="Producer Encord requests per 1,000 tasks",
            unit="requests",
            kit=per(kit["encord"]),
            baseline=per(base["encord"]),
            baseline_label="list tasks only",
            note="the kit also lists label-row metadata once per 100 tasks (carried in the "
            "messages, so the consumer need not list it)",
        ),
        Row(
            section=SECTION,
            key="producer.dynamodb_calls",
            metric="Producer DynamoDB calls per 1,000 tasks (leases)",
            unit="calls",
            kit=per(kit["dynamodb"]),
            baseline=0.0,
            baseline_label="no leases",
            note="leases keep a task in flight from being enqueued twice; the baseline has none",
        ),
    ]
