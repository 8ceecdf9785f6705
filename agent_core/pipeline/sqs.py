"""SQS sending with our own size checks, batching and bounded retries.

moto is loose about limits (it counts characters, not UTF-8 bytes, and ignores attributes), so
sizes are checked here, in bytes, the way SQS counts them: body plus each attribute's name, data
type and value.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from agent_core.message import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES
from agent_core.pipeline.backoff import SQS_MAX_VISIBILITY_SECONDS, jittered_delay

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# SQS allows at most 10 message attributes per message.
SQS_MAX_MESSAGE_ATTRIBUTES = 10


@dataclass(frozen=True)
class SqsLimits:
    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES
    max_batch_bytes: int = SQS_MAX_BATCH_BYTES
    max_batch_entries: int = SQS_MAX_BATCH_ENTRIES


def attributes_size(attributes: Mapping[str, MessageAttributeValueTypeDef]) -> int:
    total = 0
    for name, value in attributes.items():
        total += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "StringValue" in value:
            total += len(str(value["StringValue"]).encode())
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            total += len(raw if isinstance(raw, bytes | bytearray) else str(raw).encode())
    return total


def message_size(body: str, attributes: Mapping[str, MessageAttributeValueTypeDef] | None) -> int:
    """Bytes SQS counts against its message limit."""
    return len(body.encode()) + (attributes_size(attributes) if attributes else 0)


@dataclass(frozen=True)
class OutgoingMessage:
    key: str  # the caller's id for this message, echoed in the SendReport
    body: str
    attributes: Mapping[str, MessageAttributeValueTypeDef] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)


@dataclass
class SendReport:
    sent: dict[str, str] = field(default_factory=dict)  # key -> SQS message id
    failed: dict[str, str] = field(default_factory=dict)  # key -> error
    calls: int = 0
    retries: int = 0

    def merge(self, other: SendReport) -> None:
        self.sent.update(other.sent)
        self.failed.update(other.failed)
        self.calls += other.calls
        self.retries += other.retries


def pack_batches(
    messages: Sequence[OutgoingMessage], limits: SqsLimits = SqsLimits()
) -> tuple[list[list[OutgoingMessage]], list[OutgoingMessage]]:
    """Group messages into SendMessageBatch calls within the entry and byte limits.

    Returns (batches, oversize): a message bigger than one message may be is never sent.
    """
    batches: list[list[OutgoingMessage]] = []
    oversize: list[OutgoingMessage] = []
    current: list[OutgoingMessage] = []
    current_bytes = 0
    for message in messages:
        size = message.size
        if size > limits.max_message_bytes or size > limits.max_batch_bytes:
            oversize.append(message)
            continue
        if current and (
            len(current) >= limits.max_batch_entries
            or current_bytes + size > limits.max_batch_bytes
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(message)
        current_bytes += size
    if current:
        batches.append(current)
    return batches, oversize


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass
class BatchSender:
    """Sends messages with SendMessageBatch: several calls in flight, failed entries retried.

    Entries SQS rejects as the sender's fault (invalid body, ...) are not retried; throttling,
    server errors and transport errors are, up to ``max_attempts`` calls per entry.
    """

    client: SQSClient
    queue_url: str
    limits: SqsLimits = field(default_factory=SqsLimits)
    max_attempts: int = 4
    retry_base_seconds: float = 0.2
    retry_max_seconds: float = 2.0
    max_workers: int = 4
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def send(self, messages: Sequence[OutgoingMessage]) -> SendReport:
        report = SendReport()
        batches, oversize = pack_batches(messages, self.limits)
        for message in oversize:
            report.failed[message.key] = (
                f"message is {message.size} bytes; SQS allows {self.limits.max_message_bytes}"
            )
        if len(batches) <= 1:
            for batch in batches:
                report.merge(self._send_batch(batch))
            return report
        from agent_core.pipeline.deadline import fan_out_executor

        for part in fan_out_executor().map(self._send_batch, batches):
            report.merge(part)
        return report

    def _send_batch(self, batch: list[OutgoingMessage]) -> SendReport:
        report = SendReport()
        pending = {f"m{i}": message for i, message in enumerate(batch)}
        last_error: dict[str, str] = {}
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                report.retries += 1
                self.sleep(
                    jittered_delay(
                        attempt - 1, self.retry_base_seconds, self.retry_max_seconds, self.rng
                    )
                )
            entries: list[Any] = []
            for entry_id, message in pending.items():
                entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
                if message.attributes:
                    entry["MessageAttributes"] = dict(message.attributes)
                entries.append(entry)
            report.calls += 1
            try:
                reply = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                # The whole call failed (after botocore's own retries): try every entry again.
                for entry_id in pending:
                    last_error[entry_id] = _describe(exc)
                if isinstance(exc, ClientError) and _is_permanent(exc):
                    break
                continue
            for ok in reply.get("Successful", []):
                if ok["Id"] in pending:
                    report.sent[pending.pop(ok["Id"]).key] = ok["MessageId"]
            for bad in reply.get("Failed", []):
                entry_id = bad["Id"]
                last_error[entry_id] = f"{bad.get('Code', '')}: {bad.get('Message', '')}"
                if bad.get("SenderFault") and entry_id in pending:
                    report.failed[pending.pop(entry_id).key] = last_error[entry_id]
            if not pending:
                break
        for entry_id, message in pending.items():
            report.failed[message.key] = last_error.get(entry_id, "not sent")
        return report


_PERMANENT_CODES = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAddress",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}


def _is_permanent(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code", "") in _PERMANENT_CODES


def change_visibility(
    client: SQSClient, queue_url: str, changes: Sequence[tuple[str, int]]
) -> dict[str, str]:
    """Set each (receipt handle, seconds) with ChangeMessageVisibilityBatch, 10 per call.

    Returns the errors by receipt handle; a failed change only means the message comes back
    after the queue's own visibility timeout instead.
    """
    errors: dict[str, str] = {}
    for start in range(0, len(changes), SQS_MAX_BATCH_ENTRIES):
        chunk = changes[start : start + SQS_MAX_BATCH_ENTRIES]
        entries: list[Any] = [
            {
                "Id": f"v{i}",
                "ReceiptHandle": handle,
                "VisibilityTimeout": max(0, min(int(seconds), SQS_MAX_VISIBILITY_SECONDS)),
            }
            for i, (handle, seconds) in enumerate(chunk)
        ]
        try:
            reply = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            for handle, _ in chunk:
                errors[handle] = _describe(exc)
            continue
        for bad in reply.get("Failed", []):
            handle = chunk[int(bad["Id"][1:])][0]
            errors[handle] = f"{bad.get('Code', '')}: {bad.get('Message', '')}"
    return errors
