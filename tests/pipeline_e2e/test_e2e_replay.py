"""DLQ inspection and replay (agent_core.pipeline.replay and `agentkit dlq`) against moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import run_cli

from agent_core.exceptions import ConfigurationError
from agent_core.message import DlqAttributes, TaskEnvelope
from agent_core.pipeline.replay import DlqFilter, inspect_dlq, queue_depth, replay_dlq
from infra.localstack.moto import MotoServer
from infra.localstack.resources import LocalResources, PipelineShape, create_resources

STAGES = {"pre-label": str(uuid.uuid4()), "quality-check": str(uuid.uuid4())}


def _attr(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _park(sqs: Any, dlq_url: str, index: int, stage: str, error: str) -> str:
    """Put a message in the DLQ the way the consumer parks a failed task."""
    task_uuid = str(uuid.uuid4())
    envelope = TaskEnvelope(
        project_hash="project-1",
        stage_uuid=uuid.UUID(STAGES[stage]),
        stage_name=stage,
        task={"uuid": task_uuid, "data_hash": str(uuid.uuid4()), "data_title": f"img_{index}.jpg"},
    )
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=envelope.to_body(),
        MessageAttributes={
            DlqAttributes.REASON: _attr("failed"),
            DlqAttributes.ERROR_TYPE: _attr(error.split(":")[0]),
            DlqAttributes.ERROR: _attr(error),
            DlqAttributes.RECEIVE_COUNT: _attr("5"),
            DlqAttributes.STAGE_UUID: _attr(STAGES[stage]),
            DlqAttributes.TASK_UUID: _attr(task_uuid),
        },
    )
    return task_uuid


@pytest.fixture
def parked(moto_server: MotoServer, sqs: Any) -> Iterator[tuple[LocalResources, list[str]]]:
    """A DLQ with 12 failed tasks (two stages, two errors), a poison and a redriven message."""
    resources = create_resources(PipelineShape(), client_factory=moto_server.client)
    tasks = []
    for i in range(12):
        stage = "pre-label" if i % 2 == 0 else "quality-check"
        error = "TimeoutError: model server unreachable" if i % 3 == 0 else "ValueError: bad frame"
        tasks.append(_park(sqs, resources.dead_letter_queue_url, i, stage, error))
    sqs.send_message(
        QueueUrl=resources.dead_letter_queue_url,
        MessageBody="not json",
        MessageAttributes={
            DlqAttributes.REASON: _attr("poison"),
            DlqAttributes.ERROR_TYPE: _attr("PoisonMessage"),
            DlqAttributes.ERROR: _attr("message body is not JSON"),
        },
    )
    # What SQS's redrive policy moves after repeated crashes: the body alone.
    sqs.send_message(QueueUrl=resources.dead_letter_queue_url, MessageBody="{}")
    yield resources, tasks


def _snapshot(sqs: Any, url: str) -> set[str]:
    return {m.message_id for m in inspect_dlq(sqs, url)}


def test_inspect_describes_and_filters_without_changing_the_queue(
    sqs: Any, parked: tuple[LocalResources, list[str]]
) -> None:
    resources, tasks = parked
    url = resources.dead_letter_queue_url
    everything = inspect_dlq(sqs, url)
    assert len(everything) == 14
    assert [m.sent_at for m in everything] == sorted(m.sent_at for m in everything if m.sent_at)
    assert {m.reason for m in everything} == {"failed", "poison", "redrive"}
    redriven = next(m for m in everything if m.reason == "redrive")
    assert redriven.error_type == "MaxReceiveCountExceeded" and not redriven.envelope_valid
    failed = next(m for m in everything if m.task_uuid == tasks[0])
    assert failed.stage_name == "pre-label" and failed.stage_uuid == STAGES["pre-label"]
    assert failed.data_title == "img_0.jpg" and failed.receive_count == 5
    assert failed.error_type == "TimeoutError" and failed.age_seconds() is not None

    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(stage="pre-label"))) == 6
    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(stage=STAGES["quality-check"]))) == 6
    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(error_contains="UNREACHABLE"))) == 4
    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(task="img_3.jpg"))) == 1
    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(task=tasks[5]))) == 1
    assert len(inspect_dlq(sqs, url, dlq_filter=DlqFilter(reason="poison"))) == 1
    both = DlqFilter(stage="quality-check", error_contains="bad frame")
    assert {m.data_title for m in inspect_dlq(sqs, url, dlq_filter=both)} == {
        "img_1.jpg",
        "img_5.jpg",
        "img_7.jpg",
        "img_11.jpg",
    }
    # Inspecting released everything: the queue is as it was, all visible.
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "14"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_replay_with_filter_and_limit_moves_only_those(
    sqs: Any, parked: tuple[LocalResources, list[str]]
) -> None:
    resources, _ = parked
    dlq, work = resources.dead_letter_queue_url, resources.work_queue_url
    before = {m.message_id: m for m in inspect_dlq(sqs, dlq)}
    progress: list[tuple[int, int | None]] = []

    result = replay_dlq(
        sqs,
        dlq,
        work,
        dlq_filter=DlqFilter(stage="pre-label", error_contains="bad frame"),
        limit=3,
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert result.mode == "receive_send_delete"
    assert result.replayed == 3 and result.matched == 3 and result.failed == 0
    assert progress and progress[-1][0] == 3
    assert queue_depth(sqs, work) == 3 and queue_depth(sqs, dlq) == 11
    replayed_ids = {m.message_id for m in result.messages}
    assert _snapshot(sqs, dlq) == set(before) - replayed_ids
    received = sqs.receive_message(
        QueueUrl=work, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(received) == 3
    for message in received:
        attributes = message["MessageAttributes"]
        source = attributes[DlqAttributes.REPLAYED_FROM]["StringValue"]
        assert source in replayed_ids
        # Body and attributes are kept as they were in the DLQ.
        assert message["Body"] == before[source].body
        assert attributes[DlqAttributes.ERROR]["StringValue"] == "ValueError: bad frame"
        assert attributes[DlqAttributes.REASON]["StringValue"] == "failed"


def test_dry_run_changes_nothing(sqs: Any, parked: tuple[LocalResources, list[str]]) -> None:
    resources, _ = parked
    dlq, work = resources.dead_letter_queue_url, resources.work_queue_url
    before = _snapshot(sqs, dlq)
    result = replay_dlq(sqs, dlq, work, dlq_filter=DlqFilter(stage="pre-label"), dry_run=True)
    assert result.dry_run and result.matched == 6 and result.replayed == 0
    assert {m.stage_name for m in result.messages} == {"pre-label"}
    assert _snapshot(sqs, dlq) == before
    assert queue_depth(sqs, work) == 0

    cli = run_cli(
        "dlq",
        "replay",
        "--dry-run",
        "--json",
        "--dlq-url",
        dlq,
        "--queue-url",
        work,
        env=_cli_env(sqs),
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["matched"] == 14
    assert _snapshot(sqs, dlq) == before
    assert queue_depth(sqs, work) == 0


def test_replay_all_falls_back_when_the_move_task_api_is_missing(
    sqs: Any, parked: tuple[LocalResources, list[str]]
) -> None:
    resources, _ = parked
    dlq, work = resources.dead_letter_queue_url, resources.work_queue_url
    with pytest.raises(ConfigurationError, match="StartMessageMoveTask"):
        replay_dlq(sqs, dlq, work, use_move_task=True)  # moto does not implement it
    with pytest.raises(ConfigurationError, match="filter"):
        replay_dlq(sqs, dlq, work, dlq_filter=DlqFilter(stage="x"), use_move_task=True)
    assert queue_depth(sqs, dlq) == 14

    result = replay_dlq(sqs, dlq, work)
    assert result.mode == "receive_send_delete" and result.replayed == 14
    assert queue_depth(sqs, dlq) == 0 and queue_depth(sqs, work) == 14


def _cli_env(sqs: Any) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": sqs.meta.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": sqs.meta.region_name,
        "AWS_REGION": sqs.meta.region_name,
    }


def test_cli_inspect_json_and_table(sqs: Any, parked: tuple[LocalResources, list[str]]) -> None:
    resources, tasks = parked
    env = {**_cli_env(sqs), "DEAD_LETTER_QUEUE_URL": resources.dead_letter_queue_url}

    result = run_cli("dlq", "inspect", "--json", "--stage", "pre-label", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 6
    row = next(r for r in rows if r["task_uuid"] == tasks[0])
    assert row["stage_name"] == "pre-label" and row["reason"] == "failed"
    assert row["error_type"] == "TimeoutError" and row["error"].startswith("TimeoutError")
    assert row["receive_count"] == 5 and row["age_seconds"] >= 0 and row["message_id"]

    table = run_cli("dlq", "inspect", "--task", "img_4.jpg", env=env)
    assert table.returncode == 0, table.stderr
    assert "img_4.jpg" in table.stdout and "ValueError" in table.stdout

    missing = run_cli("dlq", "inspect", env={**_cli_env(sqs), "DEAD_LETTER_QUEUE_URL": ""})
    assert missing.returncode == 2
    assert "--dlq-url is required" in missing.stderr and "Traceback" not in missing.stderr
