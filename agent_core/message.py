"""The SQS message envelope: one message is one visit of one task to one agent stage.

Versioned so that a producer and a consumer of different releases can tell each other apart:
a consumer rejects a version it does not know as a poison message instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_core.exceptions import PoisonMessageError

ENVELOPE_VERSION = 1
# SQS's limit on a message body plus its attributes, in UTF-8 bytes.
SQS_MAX_MESSAGE_BYTES = 1_048_576
SQS_MAX_BATCH_BYTES = 1_048_576
SQS_MAX_BATCH_ENTRIES = 10
# Ends the error of a message no agentkit producer could have written: what the operator does.
FOREIGN_MESSAGE_HINT = (
    "Only the agentkit producer and `agentkit dlq replay` write to the work queue: find what else "
    "sends to it. The message is kept in the DLQ (`agentkit dlq inspect`)."
)


class TaskEnvelope(BaseModel):
    """What the producer enqueues for one task and the consumer needs to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    project_hash: str = Field(min_length=1)
    stage_uuid: UUID
    stage_name: str | None = None
    # The task spec exactly as ``AgentTask.model_dump_json()`` gives it.
    task: dict[str, Any]
    # The label-row metadata listed in bulk by the producer (``LabelRowMetadata.to_dict()``),
    # so that the consumer does not list it again. None: the consumer lists it itself.
    label_row_metadata: dict[str, Any] | None = None
    enqueued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Who enqueued it: a producer run id, or "replay:<id>" for a DLQ replay.
    origin: str = "producer"

    @property
    def task_uuid(self) -> str:
        return str(self.task.get("uuid"))

    @property
    def visit(self) -> str:
        return task_visit(str(self.stage_uuid), self.task)

    @property
    def data_hash(self) -> str:
        return str(self.task.get("data_hash"))

    def to_body(self) -> str:
        return self.model_dump_json()


def task_visit(stage_uuid: str, task: Mapping[str, Any]) -> str:
    """Which visit of the task to the stage a message is for: the stage and the time the task
    last changed, which Encord sets when the task enters a stage. A task that leaves and comes
    back is a new visit, so a lease left from the earlier one never blocks it (docs/LEASES.md).
    """
    return f"{stage_uuid}@{task.get('updated_at') or ''}"


def canonical_uuid(value: object, what: str) -> str:
    """``value`` as a lower-case hyphenated UUID, or PoisonMessageError: a task UUID is a lease key,
    and an upper-cased or padded copy of one must not get a lease of its own."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            return str(UUID(value))
        except ValueError:
            pass
    shown = repr(value)[:80]
    raise PoisonMessageError(f"{what} {shown} is not a UUID. {FOREIGN_MESSAGE_HINT}")


def parse_envelope(body: str) -> TaskEnvelope:
    """Parse a message body, or raise PoisonMessageError saying exactly what is wrong with it."""
    try:
        raw = json.loads(body)
    except (ValueError, TypeError, RecursionError) as exc:
        # ValueError covers JSONDecodeError; RecursionError is a body nested too deep to parse.
        raise PoisonMessageError(
            f"message body is not JSON ({exc.msg if hasattr(exc, 'msg') else type(exc).__name__}). "
            f"{FOREIGN_MESSAGE_HINT}"
        ) from None
    if not isinstance(raw, dict):
        raise PoisonMessageError(
            f"message body is JSON {type(raw).__name__}, expected an object. {FOREIGN_MESSAGE_HINT}"
        )
    version = raw.get("version")
    # Strict: JSON true equals 1 in Python, and must not pass for version 1.
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise PoisonMessageError(
            f"unknown envelope version {version!r}; this consumer reads version {ENVELOPE_VERSION}. "
            "Deploy producer and consumer from the same release."
        )
    try:
        envelope = TaskEnvelope.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PoisonMessageError(
            f"message does not match the task envelope schema: {problems}. {FOREIGN_MESSAGE_HINT}"
        ) from None
    for field in ("uuid", "data_hash"):
        if not envelope.task.get(field):
            raise PoisonMessageError(
                f"task spec in the message has no {field!r}. {FOREIGN_MESSAGE_HINT}"
            )
    task = dict(envelope.task)
    task["uuid"] = canonical_uuid(task["uuid"], "task uuid")
    task["data_hash"] = canonical_uuid(task["data_hash"], "task data_hash")
    return envelope.model_copy(update={"task": task})


# Message attributes the consumer puts on a message it parks in the DLQ itself (poison messages,
# and failures on their last allowed receive), so that `agentkit dlq inspect` can show why.
class DlqAttributes:
    ERROR = "agentkit.error"  # the error text (truncated to fit SQS limits)
    ERROR_TYPE = "agentkit.error_type"  # exception class name, or "PoisonMessage"
    REASON = "agentkit.reason"  # "poison" | "failed"
    RECEIVE_COUNT = "agentkit.receive_count"
    SOURCE_MESSAGE_ID = "agentkit.source_message_id"
    FAILED_AT = "agentkit.failed_at"  # ISO-8601 UTC
    STAGE_UUID = "agentkit.stage_uuid"
    TASK_UUID = "agentkit.task_uuid"
    # Set by `agentkit dlq replay` on the copy it sends back to the work queue.
    REPLAYED_FROM = "agentkit.replayed_from"
