"""What 100,000 tasks with a 200 ms model call cost on AWS, from the counts the bench measured.

Kit: Lambda GB-seconds (the consumers' measured handler time per task at the template's
concurrency times the consumer's memory, plus the producer tick's time per task times its
memory), Lambda requests (one per consumer batch), SQS requests (the handlers' measured calls per
task plus the event-source mapping's receive and delete, one each per batch of up to 10
messages), DynamoDB request units (measured writes and reads per task; a transactional item bills
two) and Encord requests (measured). Peer: its sequential Runner on one always-on instance, for
the hours the run takes at its measured tasks/s, and per month.

Prices: us-east-1, on-demand, without the free tiers. Where each comes from is in ``PRICES``.
"""

from __future__ import annotations

import math
from typing import Any

TASKS = 100_000
MODEL_MS = 200.0
HOURS_PER_MONTH = 730

PRICES: dict[str, dict[str, Any]] = {
    "lambda_gb_second": {
        "usd": 0.0000166667,
        "unit": "GB-second, x86",
        "source": "https://aws.amazon.com/lambda/pricing/ (also the AWS whitepaper 'How AWS "
        "Pricing Works', docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html)",
    },
    "lambda_request": {
        "usd": 0.20 / 1e6,
        "unit": "request",
        "source": "https://aws.amazon.com/lambda/pricing/",
    },
    "sqs_request": {
        "usd": 0.40 / 1e6,
        "unit": "standard-queue request (each 64 KB chunk of a payload)",
        "source": "https://aws.amazon.com/sqs/pricing/",
    },
    "dynamodb_write_unit": {
        "usd": 0.625 / 1e6,
        "unit": "on-demand write request unit (after the November 2024 price cut)",
        "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    },
    "dynamodb_read_unit": {
        "usd": 0.125 / 1e6,
        "unit": "on-demand read request unit",
        "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    },
    "instance_hour": {
        "usd": 0.0208,
        "unit": "t3.small on-demand hour, Linux (2 vCPU, 2 GiB)",
        "instance": "t3.small",
        "source": "https://aws.amazon.com/ec2/pricing/on-demand/",
    },
}
# Lambda's event-source mapping receives up to 10 messages per ReceiveMessage and deletes a
# batch with DeleteMessageBatch (10 entries per call).
ESM_MESSAGES_PER_CALL = 10


def _price(name: str) -> float:
    return float(PRICES[name]["usd"])


def cost_model(
    data: dict[str, Any], model_ms: float = MODEL_MS, tasks: int = TASKS
) -> dict[str, Any]:
    """The cost of ``tasks`` tasks from the peer section's measurements (``peer.measure``)."""
    template = data["template"]
    by_model = data["throughput"]["by_model"]
    if f"{model_ms:g}" not in by_model:
        # A run without that model time (a smoke run): the longest one measured.
        model_ms = max(e["model_ms"] for e in by_model.values())
    entry = by_model[f"{model_ms:g}"]
    kit = entry["kit"][str(template["concurrency"])]
    runs = kit["runs"]
    records_per_invocation = sorted(r["records_per_invocation"] for r in runs)[len(runs) // 2]
    producer_seconds_per_task = sorted(r["producer_tick_seconds"] / r["tasks"] for r in runs)[
        len(runs) // 2
    ]
    aws = sorted((r["aws"] for r in runs), key=lambda a: a["dynamodb_calls_per_task"])[
        len(runs) // 2
    ]

    consumer_gb_s = tasks * kit["handler_seconds_per_task"] * template["consumer_memory_mb"] / 1024
    producer_gb_s = tasks * producer_seconds_per_task * template["producer_memory_mb"] / 1024
    invocations = math.ceil(tasks / records_per_invocation)
    esm_calls = 2 * math.ceil(tasks / ESM_MESSAGES_PER_CALL)
    sqs_requests = tasks * aws["sqs_handler_calls_per_task"] + esm_calls
    write_units = tasks * aws["dynamodb_write_units_per_task"]
    read_units = tasks * aws["dynamodb_read_units_per_task"]
    encord = tasks * kit["encord_per_task"]
    lines = {
        "lambda_gb_seconds": (consumer_gb_s + producer_gb_s, _price("lambda_gb_second")),
        "lambda_requests": (invocations, _price("lambda_request")),
        "sqs_requests": (sqs_requests, _price("sqs_request")),
        "dynamodb_write_units": (write_units, _price("dynamodb_write_unit")),
        "dynamodb_read_units": (read_units, _price("dynamodb_read_unit")),
    }
    kit_cost = {
        name: {"quantity": quantity, "usd": quantity * price}
        for name, (quantity, price) in lines.items()
    }
    peer_tps = entry["peer_tasks_per_second"]
    peer_hours = tasks / peer_tps / 3600
    peer_encord = sorted(r["encord_per_task"] for r in entry["peer_runs"])[
        len(entry["peer_runs"]) // 2
    ]
    instance = PRICES["instance_hour"]
    return {
        "tasks": tasks,
        "model_ms": model_ms,
        "kit": {
            "lines": kit_cost,
            "consumer_gb_seconds": consumer_gb_s,
            "producer_gb_seconds": producer_gb_s,
            "encord_requests": encord,
            "hours_at_local_rate": tasks / kit["tasks_per_second"] / 3600,
            "total_usd": sum(line["usd"] for line in kit_cost.values()),
        },
        "peer": {
            "instance": instance["instance"],
            "tasks_per_second": peer_tps,
            "hours": peer_hours,
            "usd_for_the_run": peer_hours * _price("instance_hour"),
            "usd_per_month": HOURS_PER_MONTH * _price("instance_hour"),
            "encord_requests": tasks * peer_encord,
        },
        "prices": PRICES,
    }
