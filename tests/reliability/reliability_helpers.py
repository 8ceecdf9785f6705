"""Helpers for the reliability and security tests: a small local stack, receiving its messages,
and calling the real consumer handler with them as Lambda would (a unique module name: several
test folders have a conftest.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from infra.localstack.events import record_from_message

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.resources import PipelineShape
    from infra.localstack.stack import LocalStack

EDGE_AGENT = "reliability_agents:make_edge_runner"
# The queue redrives after 4 receives; the kit runs a task at most 3 times (LAST_RUN) and keeps
# the 4th receive for parking what was killed (agent_core.pipeline.consume).
MAX_RECEIVE_COUNT = 4
LAST_RUN = MAX_RECEIVE_COUNT - 1


def edge_shape() -> PipelineShape:
    from infra.localstack.resources import PipelineShape

    return PipelineShape.from_template().replace(
        max_receive_count=MAX_RECEIVE_COUNT,
        consumer_timeout_seconds=30,
        visibility_timeout_seconds=60,
        maximum_concurrency=1,
        maximum_batching_window_seconds=0.2,
    )


@contextmanager
def edge_stack(emulator: Emulator, moto: MotoServer, **kwargs: Any) -> Iterator[LocalStack]:
    """A LocalStack with the one-stage bad-input project and ``make_edge_runner``."""
    import reliability_agents

    from infra.localstack.stack import LocalStack

    kwargs.setdefault("fixture", reliability_agents.EDGE_FIXTURE)
    kwargs.setdefault("agent_module", EDGE_AGENT)
    kwargs.setdefault("shape", edge_shape())
    extra_env = {
        "ENCORD_MAX_RETRIES": "1",
        "ENCORD_BACKOFF_FACTOR": "0.01",
        "TIME_GUARD_MS": "2000",
    }
    extra_env.update(kwargs.pop("extra_env", {}))
    emulator.faults.clear()
    reliability_agents.reset()
    stack = LocalStack(emulator=emulator, moto=moto, extra_env=extra_env, **kwargs)
    with stack:
        yield stack
    emulator.faults.clear()


def titles(stack: LocalStack) -> dict[str, str]:
    """title -> task uuid of the stack's project."""
    assert stack.seeded is not None
    units = stack.emulator.state.data_units
    return {units[h].title: t for h, t in stack.seeded.task_by_data.items()}


def enqueue_and_receive(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """One producer tick, then every message received (60 s invisible), keyed by data title."""
    summary = stack.producer_tick()
    assert summary["totals"]["enqueued"] > 0, summary
    messages: dict[str, dict[str, Any]] = {}
    sqs = stack.sqs()
    for _ in range(10):  # bounded
        reply = sqs.receive_message(
            QueueUrl=stack.queues.work_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        batch = reply.get("Messages", [])
        if not batch:
            break
        for message in batch:
            messages[json.loads(message["Body"])["task"]["data_title"]] = message
    return messages


def record(stack: LocalStack, message: dict[str, Any], receive_count: int | None = None) -> Any:
    """The Lambda event record of a received message (optionally as its n-th receive)."""
    rec = record_from_message(message, queue_arn=stack.queues.work_queue_arn)
    if receive_count is not None:
        rec["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return rec


def send_and_receive(stack: LocalStack, body: str) -> dict[str, Any]:
    """Put a raw body on the work queue and receive exactly that message."""
    sqs = stack.sqs()
    sent = sqs.send_message(QueueUrl=stack.queues.work_queue_url, MessageBody=body)["MessageId"]
    for _ in range(10):  # other messages may be visible too; bounded
        reply = sqs.receive_message(
            QueueUrl=stack.queues.work_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        for message in reply.get("Messages", []):
            if message["MessageId"] == sent:
                return dict(message)
    raise AssertionError("the message sent was not received")


def invoke_consumer(records: list[dict[str, Any]], timeout_seconds: float = 30) -> Any:
    """The real consumer handler with a Lambda-shaped event and context."""
    from handlers.consumer import lambda_handler
    from infra.localstack.poller import LocalLambdaContext

    context = LocalLambdaContext(function_name="ConsumerFunction", timeout_seconds=timeout_seconds)
    return lambda_handler({"Records": records}, context)


def failure_ids(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def dlq_raw(stack: LocalStack) -> list[dict[str, Any]]:
    """Every DLQ message with all its attributes; visible again afterwards."""
    sqs = stack.sqs()
    url = stack.queues.dead_letter_queue_url
    found: list[dict[str, Any]] = []
    for _ in range(10):  # bounded; what was seen stays invisible until the end of the scan
        reply = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        batch = reply.get("Messages", [])
        if not batch:
            break
        found.extend(batch)
    for start in range(0, len(found), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(found[start : start + 10])
            ],
        )
    return found


def attr(message: dict[str, Any], name: str) -> str:
    return str(message["MessageAttributes"][name]["StringValue"])


def lease(stack: LocalStack, task_uuid: str) -> dict[str, str] | None:
    item = (
        stack.moto.client("dynamodb")
        .get_item(
            TableName=stack.queues.lease_table_name,
            Key={"task_uuid": {"S": task_uuid}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return None if item is None else {k: str(next(iter(v.values()))) for k, v in item.items()}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_ssh_key() -> str:
    """A fresh Ed25519 private key in OpenSSH format that no Encord user has registered."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
