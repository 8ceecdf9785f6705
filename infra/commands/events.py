"""``agentkit events``: (re)generate the sample events in events/ for ``sam local invoke``.

events/scheduled.json is what the EventBridge schedule sends the producer; events/sqs-batch.json
is an SQS batch for the consumer with valid task messages, a poison message and a message
replayed from the DLQ. The output is deterministic for given options, so regenerating the
committed files changes nothing unless the options (or the envelope format) changed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agent_core.exceptions import ConfigurationError

PLACEHOLDER_PROJECT_HASH = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_STAGE_UUID = "00000000-0000-0000-0000-000000000000"
# Fixed so that regenerating the committed files is a no-op.
EVENT_TIME = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("6f1c4a52-8b0e-4c1e-9a7b-3b5d2f0e9c41")
DEFAULT_QUEUE_NAME = "agentkit-work"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"


def example_tasks(count: int = 3) -> list[dict[str, Any]]:
    """Deterministic AgentTask specs (as ``AgentTask.model_dump_json()`` gives them)."""
    stamp = EVENT_TIME.replace(tzinfo=None).isoformat()
    return [
        {
            "uuid": str(uuid.uuid5(_NAMESPACE, f"task-{i}")),
            "created_at": stamp,
            "updated_at": stamp,
            "status": "NEW",
            "data_hash": str(uuid.uuid5(_NAMESPACE, f"data-{i}")),
            "data_title": f"example-{i}.jpg",
            "label_branch_name": "main",
            "assignee": None,
            "last_actioned_by": None,
        }
        for i in range(1, count + 1)
    ]


def build_sqs_batch_event(
    *,
    project_hash: str,
    stage_uuid: str,
    stage_name: str | None,
    tasks: list[dict[str, Any]],
    queue_arn: str,
    region: str = DEFAULT_REGION,
    time: datetime = EVENT_TIME,
) -> dict[str, Any]:
    """Records: one valid message per task but the last, a poison message, and the last task as
    a message replayed from the DLQ (with the consumer's failure attributes and the replay mark).
    """
    from agent_core.message import DlqAttributes, TaskEnvelope
    from infra.localstack.events import sqs_event, synthetic_record

    if len(tasks) < 2:
        raise ConfigurationError("the SQS sample needs at least two tasks (one is the replay)")

    def envelope(task: dict[str, Any], origin: str) -> str:
        return TaskEnvelope(
            project_hash=project_hash,
            stage_uuid=uuid.UUID(stage_uuid),
            stage_name=stage_name,
            task=task,
            enqueued_at=time,
            origin=origin,
        ).to_body()

    def record(label: str, body: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
        return synthetic_record(
            body,
            queue_arn=queue_arn,
            region=region,
            message_id=str(uuid.uuid5(_NAMESPACE, f"message-{label}")),
            receipt_handle=f"sample-receipt-handle-{label}",
            sent_at=time,
            string_attributes=attributes,
        )

    records = [
        record(f"valid-{i}", envelope(task, "producer:sample"))
        for i, task in enumerate(tasks[:-1], start=1)
    ]
    # Truncated JSON: the consumer must park it in the DLQ and still process the rest.
    records.append(
        record("poison", '{"version": 1, "project_hash": "' + project_hash + '", "task": {')
    )
    replayed_from_dlq = {
        DlqAttributes.REPLAYED_FROM: str(uuid.uuid5(_NAMESPACE, "dlq-message")),
        DlqAttributes.REASON: "failed",
        DlqAttributes.ERROR_TYPE: "RuntimeError",
        DlqAttributes.ERROR: "RuntimeError: the model server was unreachable",
        DlqAttributes.RECEIVE_COUNT: "5",
        DlqAttributes.TASK_UUID: str(tasks[-1].get("uuid")),
        DlqAttributes.STAGE_UUID: stage_uuid,
    }
    records.append(record("replayed", envelope(tasks[-1], "producer:sample"), replayed_from_dlq))
    return sqs_event(records)


def write_events(
    out_dir: Path,
    *,
    project_hash: str = PLACEHOLDER_PROJECT_HASH,
    stage_uuid: str = PLACEHOLDER_STAGE_UUID,
    stage_name: str | None = "pre-label",
    tasks: list[dict[str, Any]] | None = None,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    queue_name: str = DEFAULT_QUEUE_NAME,
) -> list[Path]:
    from infra.localstack.events import queue_arn_for, scheduled_event

    try:
        uuid.UUID(stage_uuid)
    except ValueError:
        raise ConfigurationError(f"--stage-uuid {stage_uuid!r} is not a UUID") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    scheduled = scheduled_event(
        rule_name="agentkit-producer-schedule",
        region=region,
        account=account,
        time=EVENT_TIME,
        event_id=str(uuid.uuid5(_NAMESPACE, "scheduled-event")),
    )
    batch = build_sqs_batch_event(
        project_hash=project_hash,
        stage_uuid=stage_uuid,
        stage_name=stage_name,
        tasks=tasks if tasks is not None else example_tasks(),
        queue_arn=queue_arn_for(queue_name, region, account),
        region=region,
    )
    written = []
    for name, data in (("scheduled.json", scheduled), ("sqs-batch.json", batch)):
        path = out_dir / name
        path.write_text(json.dumps(data, indent=2) + "\n")
        written.append(path)
    return written


def _read_tasks(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"--tasks-json {str(path)!r} could not be read: {exc}") from None
    if not isinstance(data, list) or not all(
        isinstance(t, dict) and t.get("uuid") and t.get("data_hash") for t in data
    ):
        raise ConfigurationError(
            f"--tasks-json {str(path)!r} must hold a JSON list of task specs "
            "(AgentTask.model_dump(mode='json')), each with 'uuid' and 'data_hash'"
        )
    return data


def events(
    out_dir: Path = typer.Option(Path("events"), "--out-dir", help="Where to write the files."),
    project_hash: str = typer.Option(
        PLACEHOLDER_PROJECT_HASH, "--project-hash", help="Project hash put in the envelopes."
    ),
    stage_uuid: str = typer.Option(
        PLACEHOLDER_STAGE_UUID, "--stage-uuid", help="Agent stage UUID put in the envelopes."
    ),
    stage_name: str = typer.Option("pre-label", "--stage-name", help="Agent stage title."),
    tasks_json: Path | None = typer.Option(
        None,
        "--tasks-json",
        help="JSON list of real task specs to use (at least 2; the last becomes the replay).",
    ),
    region: str = typer.Option(
        DEFAULT_REGION, "--region", help="Region written into the events' ARNs."
    ),
    queue_name: str = typer.Option(
        DEFAULT_QUEUE_NAME, "--queue-name", help="Queue name written into the events' ARNs."
    ),
) -> None:
    """(Re)generate events/scheduled.json and events/sqs-batch.json for `sam local invoke`."""
    tasks = _read_tasks(tasks_json) if tasks_json is not None else None
    for path in write_events(
        out_dir,
        project_hash=project_hash,
        stage_uuid=stage_uuid,
        stage_name=stage_name,
        tasks=tasks,
        region=region,
        queue_name=queue_name,
    ):
        typer.echo(f"wrote {path}")
