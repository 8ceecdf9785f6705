"""Inspect the dead-letter queue and move messages back to the work queue.

Messages reach the DLQ three ways: the consumer parks a poison message (reason "poison") or a
task that failed for good (reason "failed") with ``DlqAttributes`` saying why, or the queue's
redrive policy moves a message whose invocations kept crashing (no attributes: reason "redrive").

Replay without a filter or a limit uses SQS's own ``StartMessageMoveTask`` where the endpoint
implements it. Otherwise (a filter, a limit, or an endpoint such as moto without the API) it
receives from the DLQ, sends each matching message to the work queue with its body and attributes
plus ``agentkit.replayed_from``, then deletes it from the DLQ. Sending comes before deleting, so a
crash in between leaves a duplicate rather than losing a message; the consumer's task leases make
duplicates harmless. Messages that do not match stay invisible while the scan runs (so one scan
sees each message once) and are released with visibility 0 at the end.

Works against AWS and local endpoints alike; it never imports anything local-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from agent_core.exceptions import ConfigurationError, PoisonMessageError
from agent_core.message import SQS_MAX_BATCH_ENTRIES, DlqAttributes, parse_envelope
from agent_core.pipeline.sqs import (
    SQS_MAX_MESSAGE_ATTRIBUTES,
    BatchSender,
    OutgoingMessage,
    change_visibility,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

# How long a scan keeps the messages it has seen invisible; must outlast the scan itself.
DEFAULT_SCAN_VISIBILITY_SECONDS = 300
DEFAULT_MAX_MESSAGES = 10_000
Reason = Literal["poison", "failed", "redrive"]
ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DlqMessage:
    """One message in the DLQ, with what the body and the consumer's attributes say about it."""

    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    message_attributes: Mapping[str, MessageAttributeValueOutputTypeDef] = field(repr=False)
    sent_at: datetime | None
    reason: Reason
    error_type: str | None
    error: str | None
    receive_count: int | None
    stage_uuid: str | None
    stage_name: str | None
    task_uuid: str | None
    data_hash: str | None
    data_title: str | None
    failed_at: str | None
    replayed_from: str | None
    source_message_id: str | None  # the work-queue message the consumer parked
    envelope_valid: bool

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> DlqMessage:
        attributes: Mapping[str, MessageAttributeValueOutputTypeDef] = message.get(
            "MessageAttributes", {}
        )

        def text(name: str) -> str | None:
            value = attributes.get(name)
            return str(value["StringValue"]) if value and "StringValue" in value else None

        body = message.get("Body", "")
        stage_uuid, stage_name, task_uuid, data_hash, data_title = (
            text(DlqAttributes.STAGE_UUID),
            None,
            text(DlqAttributes.TASK_UUID),
            None,
            None,
        )
        envelope_valid = True
        try:
            envelope = parse_envelope(body)
        except PoisonMessageError:
            envelope_valid = False
        else:
            stage_uuid = str(envelope.stage_uuid)
            stage_name = envelope.stage_name
            task_uuid = envelope.task_uuid
            data_hash = envelope.data_hash
            title = envelope.task.get("data_title")
            data_title = str(title) if title is not None else None

        reason_text = text(DlqAttributes.REASON)
        reason: Reason = (
            "poison" if reason_text == "poison" else "failed" if reason_text else "redrive"
        )
        error = text(DlqAttributes.ERROR)
        error_type = text(DlqAttributes.ERROR_TYPE)
        system = message.get("Attributes", {})
        receive_count_text = text(DlqAttributes.RECEIVE_COUNT)
        if reason == "redrive":
            error_type = error_type or "MaxReceiveCountExceeded"
            error = error or (
                "moved by the work queue's redrive policy after its last allowed receive "
                "(the consumer crashed or timed out on it)"
            )
        sent_ms = system.get("SentTimestamp")
        return cls(
            message_id=message.get("MessageId", ""),
            receipt_handle=message.get("ReceiptHandle", ""),
            body=body,
            message_attributes=dict(attributes),
            sent_at=datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None,
            reason=reason,
            error_type=error_type,
            error=error,
            receive_count=int(receive_count_text) if receive_count_text else None,
            stage_uuid=stage_uuid,
            stage_name=stage_name,
            task_uuid=task_uuid,
            data_hash=data_hash,
            data_title=data_title,
            failed_at=text(DlqAttributes.FAILED_AT),
            replayed_from=text(DlqAttributes.REPLAYED_FROM),
            source_message_id=text(DlqAttributes.SOURCE_MESSAGE_ID),
            envelope_valid=envelope_valid,
        )

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.sent_at is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.sent_at).total_seconds())

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age_seconds(now)
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "stage_uuid": self.stage_uuid,
            "stage_name": self.stage_name,
            "task_uuid": self.task_uuid,
            "data_hash": self.data_hash,
            "data_title": self.data_title,
            "error_type": self.error_type,
            "error": self.error,
            "receive_count": self.receive_count,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "failed_at": self.failed_at,
            "age_seconds": round(age, 3) if age is not None else None,
            "replayed_from": self.replayed_from,
            "source_message_id": self.source_message_id,
            "envelope_valid": self.envelope_valid,
        }


@dataclass(frozen=True)
class DlqFilter:
    """Which DLQ messages to act on; every given criterion must match (case-insensitive)."""

    stage: str | None = None  # stage UUID or name
    error_contains: str | None = None  # substring of the error type or text
    task: str | None = None  # task UUID, data hash or data title
    reason: Reason | None = None

    def is_empty(self) -> bool:
        return not (self.stage or self.error_contains or self.task or self.reason)

    def matches(self, message: DlqMessage) -> bool:
        if self.reason and message.reason != self.reason:
            return False
        if self.stage and not _equals_any(self.stage, message.stage_uuid, message.stage_name):
            return False
        if self.task and not _equals_any(
            self.task, message.task_uuid, message.data_hash, message.data_title
        ):
            return False
        if self.error_contains:
            haystack = f"{message.error_type or ''}: {message.error or ''}".casefold()
            if self.error_contains.casefold() not in haystack:
                return False
        return True


def _equals_any(wanted: str, *values: str | None) -> bool:
    folded = wanted.strip().casefold()
    return any(v is not None and v.casefold() == folded for v in values)


@dataclass
class ReplayResult:
    mode: Literal["move_task", "receive_send_delete"]
    dry_run: bool
    scanned: int = 0
    matched: int = 0
    replayed: int = 0
    failed: int = 0
    released: int = 0
    move_task_handle: str | None = None
    approximate_moved: int | None = None
    messages: list[DlqMessage] = field(default_factory=list)  # matched (and replayed unless dry)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "matched": self.matched,
            "replayed": self.replayed,
            "failed": self.failed,
            "released": self.released,
            "move_task_handle": self.move_task_handle,
            "approximate_moved": self.approximate_moved,
            "messages": [m.to_json() for m in self.messages],
            "errors": list(self.errors),
        }


def queue_depth(sqs: SQSClient, queue_url: str) -> int:
    """Approximate number of messages in a queue (visible + in flight + delayed)."""
    reply = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )
    return sum(int(v) for v in reply.get("Attributes", {}).values())


class _Scanner:
    """Receives every message of a queue once, keeping what it has seen invisible."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        visibility_seconds: int,
        max_messages: int,
        deadline: float,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.visibility_seconds = visibility_seconds
        self.max_messages = max_messages
        self.deadline = deadline
        self.seen: set[str] = set()
        self.held: dict[str, str] = {}  # receipt handle -> message id, to release at the end

    def batches(self) -> Iterable[list[DlqMessage]]:
        empty_receives = 0
        while len(self.seen) < self.max_messages and time.monotonic() < self.deadline:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH_ENTRIES, self.max_messages - len(self.seen)),
                WaitTimeSeconds=0 if empty_receives == 0 else 1,
                VisibilityTimeout=self.visibility_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = reply.get("Messages", [])
            if not received:
                # SQS's short poll samples a subset of servers: an empty answer is final only
                # if the queue reports nothing visible, or a long poll also comes back empty.
                empty_receives += 1
                if empty_receives >= 2 or self._visible() == 0:
                    return
                continue
            empty_receives = 0
            fresh: list[DlqMessage] = []
            for raw in received:
                message = DlqMessage.from_sqs(raw)
                if message.message_id in self.seen:
                    continue
                self.seen.add(message.message_id)
                self.held[message.receipt_handle] = message.message_id
                fresh.append(message)
            if fresh:
                yield fresh

    def _visible(self) -> int:
        reply = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(reply.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))

    def forget(self, messages: Iterable[DlqMessage]) -> None:
        for message in messages:
            self.held.pop(message.receipt_handle, None)

    def release_all(self) -> tuple[int, list[str]]:
        handles = list(self.held)
        errors = change_visibility(self.sqs, self.queue_url, [(h, 0) for h in handles])
        self.held.clear()
        return len(handles) - len(errors), [f"release {h[:12]}...: {e}" for h, e in errors.items()]


def inspect_dlq(
    sqs: SQSClient,
    dlq_url: str,
    *,
    dlq_filter: DlqFilter | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    timeout_seconds: float = 120.0,
    visibility_seconds: int = DEFAULT_SCAN_VISIBILITY_SECONDS,
) -> list[DlqMessage]:
    """Every DLQ message (matching the filter), oldest first; the queue is left as it was.

    The scan receives the messages (which raises their receive count in the DLQ, as the console's
    "poll for messages" does) and releases them all with visibility 0 when it is done.
    """
    dlq_filter = dlq_filter or DlqFilter()
    scanner = _Scanner(
        sqs,
        dlq_url,
        visibility_seconds=visibility_seconds,
        max_messages=max_messages,
        deadline=time.monotonic() + timeout_seconds,
    )
    found: list[DlqMessage] = []
    try:
        for batch in scanner.batches():
            found.extend(m for m in batch if dlq_filter.matches(m))
    finally:
        scanner.release_all()
    return sorted(found, key=lambda m: m.sent_at or datetime.max.replace(tzinfo=UTC))


def replay_dlq(
    sqs: SQSClient,
    dlq_url: str,
    work_queue_url: str,
    *,
    dlq_filter: DlqFilter | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    use_move_task: bool | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    timeout_seconds: float = 300.0,
    visibility_seconds: int = DEFAULT_SCAN_VISIBILITY_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> ReplayResult:
    """Move DLQ messages (all, or those matching the filter, up to ``limit``) to the work queue.

    ``use_move_task``: None tries ``StartMessageMoveTask`` when there is no filter, no limit and
    it is not a dry run, and falls back to receive/send/delete if the endpoint lacks the API;
    False never uses it; True requires it (a ConfigurationError if it is unavailable).
    """
    dlq_filter = dlq_filter or DlqFilter()
    if limit is not None and limit < 1:
        raise ConfigurationError("--limit must be at least 1 (leave it out to replay everything)")
    can_move = dlq_filter.is_empty() and limit is None and not dry_run
    if use_move_task and not can_move:
        raise ConfigurationError(
            "StartMessageMoveTask moves a whole queue: it cannot be combined with a filter, "
            "--limit or --dry-run."
        )
    total = queue_depth(sqs, dlq_url)
    if can_move and use_move_task is not False:
        started = _start_move_task(sqs, dlq_url, work_queue_url)
        if started is not None:
            if on_progress is not None:
                on_progress(total, total)
            return ReplayResult(
                mode="move_task",
                dry_run=False,
                scanned=total,
                matched=total,
                replayed=total,
                move_task_handle=started,
                approximate_moved=total,
            )
        if use_move_task:
            raise ConfigurationError(
                "this SQS endpoint does not implement StartMessageMoveTask; replay without "
                "--move-task to copy the messages instead"
            )

    result = ReplayResult(mode="receive_send_delete", dry_run=dry_run)
    scanner = _Scanner(
        sqs,
        dlq_url,
        visibility_seconds=visibility_seconds,
        max_messages=max_messages,
        deadline=time.monotonic() + timeout_seconds,
    )
    sender = BatchSender(client=sqs, queue_url=work_queue_url)
    target = limit
    try:
        for batch in scanner.batches():
            result.scanned += len(batch)
            chosen: list[DlqMessage] = []
            for message in batch:
                if not dlq_filter.matches(message):
                    continue
                if target is not None and result.matched >= target:
                    break
                result.matched += 1
                chosen.append(message)
            result.messages.extend(chosen)
            if chosen and not dry_run:
                sent = _move(sqs, sender, dlq_url, chosen, result)
                # Sent messages are gone from the DLQ (or about to be); the rest, including any
                # that could not be sent, is released at the end.
                scanner.forget(sent)
            if on_progress is not None:
                on_progress(result.matched if dry_run else result.replayed, target or total)
            if target is not None and result.matched >= target:
                break
    finally:
        released, errors = scanner.release_all()
        result.released = released
        result.errors.extend(errors)
    return result


def _replayed_attributes(message: DlqMessage) -> dict[str, MessageAttributeValueTypeDef]:
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        DlqAttributes.REPLAYED_FROM: {"DataType": "String", "StringValue": message.message_id},
    }
    for name, value in message.message_attributes.items():
        if len(attributes) >= SQS_MAX_MESSAGE_ATTRIBUTES:
            break  # SQS allows 10; the replay marker wins over the oldest extra attribute
        if name == DlqAttributes.REPLAYED_FROM:
            continue
        kept: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = value["BinaryValue"]
        attributes[name] = kept
    return attributes


def _move(
    sqs: SQSClient,
    sender: BatchSender,
    dlq_url: str,
    messages: Sequence[DlqMessage],
    result: ReplayResult,
) -> list[DlqMessage]:
    outgoing = [
        OutgoingMessage(key=m.message_id, body=m.body, attributes=_replayed_attributes(m))
        for m in messages
    ]
    report = sender.send(outgoing)
    by_id = {m.message_id: m for m in messages}
    for key, error in report.failed.items():
        result.failed += 1
        result.errors.append(f"{key}: not sent to the work queue ({error}); left in the DLQ")
    sent = [by_id[key] for key in report.sent]
    for start in range(0, len(sent), SQS_MAX_BATCH_ENTRIES):
        chunk = sent[start : start + SQS_MAX_BATCH_ENTRIES]
        try:
            reply = sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": f"d{i}", "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            # Sent but not deleted: the message will be in both queues (a harmless duplicate).
            result.replayed += len(chunk)
            result.errors.append(f"delete from DLQ failed after sending: {exc}")
            continue
        result.replayed += len(chunk)
        for bad in reply.get("Failed", []):
            result.errors.append(
                f"{chunk[int(bad['Id'][1:])].message_id}: sent, but not deleted from the DLQ "
                f"({bad.get('Code', '')}); it will be replayed again next time"
            )
    return sent


def _start_move_task(sqs: SQSClient, dlq_url: str, work_queue_url: str) -> str | None:
    """The move task's handle, or None if this endpoint does not implement the API."""
    arns = []
    for url in (dlq_url, work_queue_url):
        reply = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arns.append(reply["Attributes"]["QueueArn"])
    try:
        started = sqs.start_message_move_task(SourceArn=arns[0], DestinationArn=arns[1])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = str(error.get("Code", ""))
        if (
            status >= 500
            or code in _UNSUPPORTED_CODES
            or "not implemented" in json.dumps(error).lower()
        ):
            return None
        raise
    except NotImplementedError:  # moto in-process
        return None
    return str(started.get("TaskHandle", ""))


_UNSUPPORTED_CODES = {"InvalidAction", "UnsupportedOperation", "NotImplemented", "UnknownOperation"}
