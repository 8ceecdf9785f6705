"""Local resources built from template.yaml, and the sample events in events/."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e_helpers import REPO, run_cli

from agent_core.message import DlqAttributes, parse_envelope
from infra.localstack.moto import MotoServer
from infra.localstack.resources import PipelineShape, create_resources, delete_resources
from infra.localstack.stack import LocalStack
from infra.template_config import load_template_config


def test_resources_follow_the_template(moto_server: MotoServer) -> None:
    config = load_template_config()
    shape = PipelineShape.from_template()
    assert shape.batch_size == config.batch_size
    assert shape.max_receive_count == config.max_receive_count
    assert shape.visibility_timeout_seconds >= 6 * shape.consumer_timeout_seconds

    resources = create_resources(shape, encord_key="key text", client_factory=moto_server.client)
    try:
        sqs = moto_server.client("sqs")
        work = sqs.get_queue_attributes(QueueUrl=resources.work_queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert json.loads(work["RedrivePolicy"]) == {
            "deadLetterTargetArn": resources.dead_letter_queue_arn,
            "maxReceiveCount": config.max_receive_count,
        }
        assert int(work["VisibilityTimeout"]) == config.visibility_timeout_seconds
        assert int(work["MessageRetentionPeriod"]) == config.work_queue_retention_seconds
        dlq = sqs.get_queue_attributes(
            QueueUrl=resources.dead_letter_queue_url, AttributeNames=["MessageRetentionPeriod"]
        )["Attributes"]
        assert int(dlq["MessageRetentionPeriod"]) == config.dlq_retention_seconds

        dynamodb = moto_server.client("dynamodb")
        table = dynamodb.describe_table(TableName=resources.lease_table_name)["Table"]
        assert table["KeySchema"] == [{"AttributeName": config.lease_table_key, "KeyType": "HASH"}]
        ttl = dynamodb.describe_time_to_live(TableName=resources.lease_table_name)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == config.lease_ttl_attribute
        assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"

        secret = moto_server.client("secretsmanager").get_secret_value(SecretId=resources.secret_id)
        assert secret["SecretString"] == "key text"
        env = resources.handler_env()
        assert env["ENCORD_SSH_KEY_SECRET_ID"] == resources.secret_id
        assert env["WORK_QUEUE_URL"] == resources.work_queue_url
    finally:
        delete_resources(resources, client_factory=moto_server.client)
    assert resources.work_queue_url not in moto_server.client("sqs").list_queues().get(
        "QueueUrls", []
    )


def test_committed_events_are_up_to_date(tmp_path: Path) -> None:
    result = run_cli("events", "--out-dir", str(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("scheduled.json", "sqs-batch.json"):
        assert (tmp_path / name).read_text() == (REPO / "events" / name).read_text(), (
            f"events/{name} is stale: run `agentkit events`"
        )
    batch = json.loads((REPO / "events" / "sqs-batch.json").read_text())
    bodies = [r["body"] for r in batch["Records"]]
    assert parse_envelope(bodies[0]).stage_name == "pre-label"
    replayed = batch["Records"][-1]["messageAttributes"]
    assert DlqAttributes.REPLAYED_FROM in replayed


def _task_specs(stack: LocalStack, stage: str, count: int) -> list[dict[str, Any]]:
    client = stack.emulator.user_client()
    project = client.get_project(stack.project_hash)
    agent_stage = project.workflow.get_stage(name=stage)
    tasks = [t.model_dump(mode="json") for t in agent_stage.get_tasks()]
    return sorted(tasks, key=lambda t: t["data_title"])[:count]


def test_sample_events_through_the_real_handlers(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    from handlers.consumer import lambda_handler as consumer
    from handlers.producer import lambda_handler as producer
    from infra.localstack.poller import LocalLambdaContext

    stack = make_stack()
    assert stack.seeded is not None
    tasks = _task_specs(stack, "check", 3)  # chk_00, chk_01, chk_02: all go to "accept"
    tasks_file = tmp_path / "tasks.json"
    tasks_file.write_text(json.dumps(tasks))
    result = run_cli(
        "events",
        "--out-dir",
        str(tmp_path),
        "--project-hash",
        stack.project_hash,
        "--stage-uuid",
        stack.seeded.stage_uuids["check"],
        "--stage-name",
        "check",
        "--tasks-json",
        str(tasks_file),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    event = json.loads((tmp_path / "sqs-batch.json").read_text())
    assert len(event["Records"]) == 4  # two valid, one poison, one replayed

    response = consumer(
        event, LocalLambdaContext(function_name="ConsumerFunction", timeout_seconds=60)
    )

    # Nothing is retried: valid and replayed tasks succeed, the poison one is parked in the DLQ.
    assert response == {"batchItemFailures": []}
    state = stack.emulator.state
    for task in tasks:
        assert state.task_stage(task["uuid"]).title == "Complete"
    poison = stack.dlq_messages()
    assert len(poison) == 1 and poison[0].reason == "poison"
    assert poison[0].source_message_id == event["Records"][2]["messageId"]
    assert "not JSON" in (poison[0].error or "")

    # The scheduled event drives the producer: the remaining tasks of both stages are enqueued.
    scheduled = json.loads((tmp_path / "scheduled.json").read_text())
    summary = producer(
        scheduled, LocalLambdaContext(function_name="ProducerFunction", timeout_seconds=60)
    )
    assert summary["stages"]["check"]["enqueued"] == 3  # 6 seeded, 3 done above
    assert summary["stages"]["triage"]["enqueued"] == 12
    assert stack.queue_depth() == 15


def test_the_fallback_shape_is_the_templates_defaults() -> None:
    # PipelineShape() stands in for template.yaml where the template is absent (an installed kit)
    # and in LocalStack's default: its hand-written defaults must not drift from the template.
    from_template = dataclasses.replace(PipelineShape.from_template(), environment={})
    assert dataclasses.replace(PipelineShape(), environment={}) == from_template
