"""The consumer: one SQS batch in, one ``run_batch`` call per stage group, partial failures out.

Every record ends in exactly one of two ways, decided here before Powertools' batch processor
reports it:

* delete (reported as a success): the task succeeded or had already left its stage; or the
  message is poison or failed for the last time and a copy with the reason is now in the DLQ;
* retry (reported in ``batchItemFailures``): the task failed and may be retried (its visibility
  is set to the backoff), was deferred because the invocation is about to time out (visibility
  0), or is running in another invocation right now (visibility = time left on that run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from agent_core.exceptions import CredentialsError, PoisonMessageError
from agent_core.message import FOREIGN_MESSAGE_HINT, DlqAttributes, TaskEnvelope, parse_envelope
from agent_core.pipeline.backoff import retry_visibility_seconds
from agent_core.pipeline.leases import Claim, ClaimStatus, LeaseRequest, LeaseTable
from agent_core.pipeline.loader import PipelineRunner
from agent_core.pipeline.sqs import (
    SQS_MAX_MESSAGE_ATTRIBUTES,
    BatchSender,
    OutgoingMessage,
    SqsLimits,
    change_visibility,
    message_size,
)
from agent_core.redaction import install_log_redaction, redact

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

    from agent_core.models import BatchItem, StageConfig, TaskOutcome
    from agent_core.pipeline.context import LambdaContextLike
    from agent_core.settings import PipelineSettings

_log = logging.getLogger(__name__)

Status = Literal[
    "succeeded",  # ran, result committed
    "skipped",  # already left its stage (or a stale copy of a finished visit)
    "failed",  # failed, will be retried after the backoff
    "dead_lettered",  # failed for the last time (or not retryable): copy in the DLQ
    "poison",  # can never be processed: copy in the DLQ
    "deferred",  # not started, the invocation is running out of time
    "busy",  # running in another invocation now
]

# Error text kept in a DLQ attribute; the traceback goes to the logs, not the message.
MAX_DLQ_ERROR_CHARS = 4_000
# Unparsable messages are counted under this stage in metrics (no stage is known).
INVALID_STAGE = "invalid"


@dataclass
class RecordResult:
    message_id: str
    status: Status
    receive_count: int
    task_uuid: str | None = None
    stage_uuid: str | None = None
    stage_title: str | None = None
    error: str | None = None
    error_type: str | None = None
    # Seconds until the message is visible again (retry results only).
    visibility_seconds: int | None = None
    duration_ms: float = 0.0
    pathway_name: str | None = None

    @property
    def report_failure(self) -> bool:
        return self.status in ("failed", "deferred", "busy")

    @property
    def metric_stage(self) -> str:
        # A poison message's stage is untrusted input: one dimension value for all of them
        # keeps the metric's cardinality bounded.
        if self.status == "poison":
            return INVALID_STAGE
        return self.stage_title or self.stage_uuid or INVALID_STAGE


@dataclass
class ConsumeReport:
    results: dict[str, RecordResult] = field(default_factory=dict)
    # Wall time of each stage group's run_batch call, by stage title.
    stage_duration_ms: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results.values():
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    @property
    def failures(self) -> list[str]:
        return [m for m, r in self.results.items() if r.report_failure]


@dataclass
class _Valid:
    record: Mapping[str, Any]
    message_id: str
    receive_count: int
    envelope: TaskEnvelope
    config: StageConfig | None = None
    claim: Claim | None = None
    run_token: str = ""


def _receive_count(record: Mapping[str, Any]) -> int:
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


def lambda_to_sqs_attributes(
    attributes: Mapping[str, Any] | None,
) -> dict[str, MessageAttributeValueTypeDef]:
    """Message attributes as Lambda's event shows them, in the shape SendMessage takes."""
    converted: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in (attributes or {}).items():
        if not isinstance(value, Mapping):
            continue
        data_type = str(value.get("dataType") or value.get("DataType") or "String")
        string_value = value.get("stringValue", value.get("StringValue"))
        binary_value = value.get("binaryValue", value.get("BinaryValue"))
        if string_value is not None:
            converted[name] = {"DataType": data_type, "StringValue": str(string_value)}
        elif binary_value is not None:
            raw = (
                binary_value if isinstance(binary_value, bytes) else base64.b64decode(binary_value)
            )
            converted[name] = {"DataType": data_type, "BinaryValue": raw}
    return converted


def _string(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value}


def build_dlq_message(
    record: Mapping[str, Any],
    *,
    reason: Literal["poison", "failed"],
    error: str,
    error_type: str,
    receive_count: int,
    stage_uuid: str | None = None,
    task_uuid: str | None = None,
    limits: SqsLimits | None = None,
    now: datetime | None = None,
) -> OutgoingMessage:
    """The DLQ copy of a record: its original body, with why it is there in the attributes."""
    limits = limits or SqsLimits()
    message_id = str(record.get("messageId", ""))
    body = str(record.get("body", ""))
    ours: dict[str, MessageAttributeValueTypeDef] = {
        DlqAttributes.REASON: _string(reason),
        DlqAttributes.ERROR_TYPE: _string(error_type[:256] or "Error"),
        DlqAttributes.SOURCE_MESSAGE_ID: _string(message_id or "unknown"),
        DlqAttributes.RECEIVE_COUNT: {"DataType": "Number", "StringValue": str(receive_count)},
        DlqAttributes.FAILED_AT: _string((now or datetime.now(UTC)).isoformat()),
    }
    if stage_uuid:
        ours[DlqAttributes.STAGE_UUID] = _string(stage_uuid)
    if task_uuid:
        ours[DlqAttributes.TASK_UUID] = _string(task_uuid)
    attributes: dict[str, MessageAttributeValueTypeDef] = dict(ours)
    # Keep the original attributes (e.g. the replay marker) in the room SQS leaves; one slot
    # stays free for the error itself.
    for name, value in lambda_to_sqs_attributes(record.get("messageAttributes")).items():
        if name in attributes or name == DlqAttributes.ERROR:
            continue
        if len(attributes) >= SQS_MAX_MESSAGE_ATTRIBUTES - 1:
            break
        attributes[name] = value

    error_text = redact(error) or "(no message)"
    room = limits.max_message_bytes - message_size(body, attributes)
    room -= len(DlqAttributes.ERROR.encode()) + len(b"String")
    if room < 64:
        # The body alone (nearly) fills a message: keep a description of it instead, so the
        # reason still reaches the DLQ. Only an oversize poison message gets here.
        raw = body.encode()
        body = json.dumps(
            {
                "agentkit_oversize_body": {
                    "bytes": len(raw),
                    "sha256": hashlib.sha256(raw).hexdigest(),
                    "head": raw[:2000].decode(errors="replace"),
                }
            }
        )
        room = limits.max_message_bytes - message_size(body, attributes) - 64
    error_text = _fit(error_text, min(room, MAX_DLQ_ERROR_CHARS * 4), MAX_DLQ_ERROR_CHARS)
    attributes[DlqAttributes.ERROR] = _string(error_text)
    return OutgoingMessage(key=message_id, body=body, attributes=attributes)


def _fit(text: str, max_bytes: int, max_chars: int) -> str:
    marker = "...[truncated]"
    if len(text) <= max_chars and len(text.encode()) <= max_bytes:
        return text
    text = text[: max(0, max_chars - len(marker))]
    while text and len(text.encode()) + len(marker) > max_bytes:
        text = text[: len(text) * 3 // 4]
    return text + marker


class Consumer:
    """Decides what happens to each record of one SQS batch, and does it."""

    def __init__(
        self,
        runner: PipelineRunner | Callable[[], PipelineRunner],
        *,
        settings: PipelineSettings,
        sqs: SQSClient,
        leases: LeaseTable,
        work_queue_url: str,
        dead_letter_queue_url: str,
        context: LambdaContextLike,
        logger: Logger | logging.Logger | None = None,
        limits: SqsLimits | None = None,
    ) -> None:
        self._runner_or_factory = runner
        self._runner: PipelineRunner | None = None
        self.settings = settings
        self.sqs = sqs
        self.leases = leases
        self.work_queue_url = work_queue_url
        self.context = context
        self.log = logger or _log
        self.limits = limits or SqsLimits()
        self.dlq = BatchSender(client=sqs, queue_url=dead_letter_queue_url, limits=self.limits)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def runner(self) -> PipelineRunner:
        """The runner, loaded on first use: a load error (no Encord key, a bad AGENT_MODULE)
        then fails this batch's messages as retryable instead of failing the invocation."""
        if self._runner is None:
            source = self._runner_or_factory
            self._runner = source if isinstance(source, PipelineRunner) else source()
        return self._runner

    def should_continue(self) -> bool:
        return self.context.get_remaining_time_in_millis() > self.settings.time_guard_ms

    def _backoff(self, receive_count: int) -> int:
        return retry_visibility_seconds(
            receive_count,
            self.settings.retry_backoff_base_seconds,
            self.settings.retry_backoff_max_seconds,
        )

    # -- the batch ----------------------------------------------------------------------------

    def process(self, records: Sequence[Mapping[str, Any]]) -> ConsumeReport:
        report = ConsumeReport()
        unique: dict[str, Mapping[str, Any]] = {}
        for record in records:
            # Lambda may hand one message over twice in a batch; it is run once.
            unique.setdefault(str(record.get("messageId", "")), record)

        dead: dict[str, OutgoingMessage] = {}  # message id -> its DLQ copy
        # Lease writes that end the claimed runs. They go after the DLQ sends: a lease is marked
        # parked only once its message's DLQ copy is really there.
        finishers: list[Callable[[], None]] = []
        valid: list[_Valid] = []
        for message_id, record in unique.items():
            count = _receive_count(record)
            try:
                envelope = self._parse_or_poison(record)
            except PoisonMessageError as exc:
                report.results[message_id] = RecordResult(
                    message_id, "poison", count, error=str(exc), error_type="PoisonMessage"
                )
                dead[message_id] = build_dlq_message(
                    record,
                    reason="poison",
                    error=str(exc),
                    error_type="PoisonMessage",
                    receive_count=count,
                    limits=self.limits,
                )
                continue
            valid.append(_Valid(record, message_id, count, envelope))

        if valid:
            self._check_against_runner(valid, report, dead)
            runnable = [v for v in valid if v.message_id not in report.results]
            if runnable and not self.should_continue():
                for item in runnable:
                    report.results[item.message_id] = self._deferred(item)
                runnable = []
            if runnable:
                self._claim(runnable, report, dead)
                claimed = [v for v in runnable if v.message_id not in report.results]
                finishers = self._run(claimed, report, dead)

        self._send_dead_letters(dead, report)
        self._run_all(finishers)
        self._apply_visibility(unique, report)
        return report

    def _parse_or_poison(self, record: Mapping[str, Any]) -> TaskEnvelope:
        # One message we cannot read must never fail its neighbours: whatever parsing raises,
        # the message is poison.
        try:
            return self._parse(record)
        except PoisonMessageError:
            raise
        except Exception as exc:
            raise PoisonMessageError(
                f"message could not be read ({type(exc).__name__}). {FOREIGN_MESSAGE_HINT}"
            ) from None

    def _parse(self, record: Mapping[str, Any]) -> TaskEnvelope:
        body = record.get("body")
        if not isinstance(body, str):
            raise PoisonMessageError(f"record has no message body. {FOREIGN_MESSAGE_HINT}")
        size = message_size(body, lambda_to_sqs_attributes(record.get("messageAttributes")))
        if size > self.limits.max_message_bytes:
            raise PoisonMessageError(
                f"message is {size} bytes (body and attributes); SQS and this consumer accept "
                f"at most {self.limits.max_message_bytes}, and the producer never sends more. "
                f"{FOREIGN_MESSAGE_HINT}"
            )
        return parse_envelope(body)

    def _check_against_runner(
        self,
        valid: list[_Valid],
        report: ConsumeReport,
        dead: dict[str, OutgoingMessage],
    ) -> None:
        try:
            runner = self.runner
            configs = {c.stage_uuid: c for c in runner.stage_configs()}
        except Exception as exc:
            # Without the stages nothing can be run or judged; every message waits for a retry.
            self._log_batch_error("could not load the runner's stages", exc)
            for item in valid:
                self._fail_unclaimed(item, exc, report, dead)
            return
        expected_project = runner.project_hash
        for item in valid:
            envelope = item.envelope
            problem: str | None = None
            if envelope.project_hash != expected_project:
                problem = (
                    f"message is for project {envelope.project_hash}, but this consumer runs "
                    f"project {expected_project}; send it to that project's queue"
                )
            elif envelope.stage_uuid not in configs:
                known = ", ".join(f"{c.title!r} ({c.stage_uuid})" for c in configs.values())
                problem = (
                    f"stage {envelope.stage_name or ''} ({envelope.stage_uuid}) has no function "
                    f"in this runner; it implements: {known or 'no stages'}. Deploy the agent "
                    "module that registers this stage (AGENT_MODULE), then replay the message "
                    "from the DLQ (`agentkit dlq replay`)"
                )
            if problem is None:
                item.config = configs[envelope.stage_uuid]
                continue
            report.results[item.message_id] = RecordResult(
                item.message_id,
                "poison",
                item.receive_count,
                task_uuid=envelope.task_uuid,
                stage_uuid=str(envelope.stage_uuid),
                error=problem,
                error_type="PoisonMessage",
            )
            dead[item.message_id] = build_dlq_message(
                item.record,
                reason="poison",
                error=problem,
                error_type="PoisonMessage",
                receive_count=item.receive_count,
                stage_uuid=str(envelope.stage_uuid),
                task_uuid=envelope.task_uuid,
                limits=self.limits,
            )

    def _fail_unclaimed(
        self,
        item: _Valid,
        exc: BaseException,
        report: ConsumeReport,
        dead: dict[str, OutgoingMessage],
    ) -> None:
        error = f"{exc}"
        result = RecordResult(
            item.message_id,
            "failed",
            item.receive_count,
            task_uuid=item.envelope.task_uuid,
            stage_uuid=str(item.envelope.stage_uuid),
            stage_title=item.config.title if item.config else item.envelope.stage_name,
            error=error,
            error_type=type(exc).__name__,
        )
        self._retry_or_dead_letter(item, result, retryable=True, dead=dead)
        report.results[item.message_id] = result

    def _deferred(self, item: _Valid) -> RecordResult:
        return RecordResult(
            item.message_id,
            "deferred",
            item.receive_count,
            task_uuid=item.envelope.task_uuid,
            stage_uuid=str(item.envelope.stage_uuid),
            stage_title=item.config.title if item.config else None,
            visibility_seconds=0,
        )

    def _claim(
        self, items: list[_Valid], report: ConsumeReport, dead: dict[str, OutgoingMessage]
    ) -> None:
        request_id = self.context.aws_request_id
        pairs: list[tuple[LeaseRequest, str]] = []
        for item in items:
            item.run_token = f"{request_id}:{item.message_id}"
            pairs.append(
                (
                    LeaseRequest(
                        item.envelope.task_uuid,
                        str(item.envelope.stage_uuid),
                        item.envelope.project_hash,
                        message_id=item.message_id,
                    ),
                    item.run_token,
                )
            )
        run_seconds = self.context.get_remaining_time_in_millis() / 1000
        claims = self.leases.claim_many(pairs, run_seconds=run_seconds)
        for item, claim in zip(items, claims, strict=True):
            item.claim = claim
            if claim.status is ClaimStatus.RUNNING_ELSEWHERE:
                result = self._result(item, "busy", "the task is running in another invocation")
                result.visibility_seconds = claim.retry_after_seconds
            elif claim.status is ClaimStatus.OTHER_STAGE:
                other = claim.previous.stage_uuid if claim.previous else "?"
                result = self._result(
                    item, "skipped", f"stale message: the task is now leased for stage {other}"
                )
            elif claim.status is ClaimStatus.PARKED:
                # SQS delivered a copy of a message whose last attempt already went to the DLQ:
                # running it again would only park the task twice.
                result = self._result(
                    item, "skipped", "stale duplicate of a message already moved to the DLQ"
                )
            elif claim.status is ClaimStatus.ERROR:
                # Never run without a lease: a parallel duplicate could run too.
                result = self._result(item, "failed", f"lease table unavailable: {claim.error}")
                result.error_type = "LeaseError"
                self._retry_or_dead_letter(item, result, retryable=True, dead=dead)
            else:
                continue
            report.results[item.message_id] = result

    @staticmethod
    def _result(item: _Valid, status: Status, error: str | None = None) -> RecordResult:
        return RecordResult(
            item.message_id,
            status,
            item.receive_count,
            task_uuid=item.envelope.task_uuid,
            stage_uuid=str(item.envelope.stage_uuid),
            stage_title=item.config.title if item.config else item.envelope.stage_name,
            error=error,
        )

    def _run(
        self,
        items: list[_Valid],
        report: ConsumeReport,
        dead: dict[str, OutgoingMessage],
    ) -> list[Callable[[], None]]:
        """Run the claimed items, one run_batch per stage; returns their lease writes."""
        from agent_core.models import BatchItem

        groups: dict[UUID, list[_Valid]] = {}
        for item in items:
            groups.setdefault(item.envelope.stage_uuid, []).append(item)

        finishers: list[Callable[[], None]] = []
        for stage_uuid, group in groups.items():
            config = group[0].config
            title = config.title if config else str(stage_uuid)
            if not self.should_continue():
                for item in group:
                    report.results[item.message_id] = self._deferred(item)
                    finishers.append(self._lease_call(item, "requeue"))
                continue
            batch: list[BatchItem] = []
            for item in group:
                first = (
                    item.receive_count == 1
                    and item.claim is not None
                    and (item.claim.is_first_delivery_of(item.envelope.origin, str(stage_uuid)))
                )
                batch.append(
                    BatchItem(
                        item_id=item.message_id,
                        task=item.envelope.task,
                        label_row_metadata=item.envelope.label_row_metadata,
                        verify_in_stage=not first,
                    )
                )
            started = time.monotonic()
            outcomes = self._run_batch(stage_uuid, title, batch)
            report.stage_duration_ms[title] = (time.monotonic() - started) * 1000
            for item in group:
                outcome = outcomes.get(item.message_id)
                result, finisher = self._settle(item, outcome, title, dead)
                report.results[item.message_id] = result
                finishers.append(finisher)
        return finishers

    def _run_batch(
        self, stage_uuid: UUID, title: str, batch: list[BatchItem]
    ) -> dict[str, TaskOutcome | BaseException]:
        try:
            outcomes = self.runner.run_batch(
                stage_uuid, batch, should_continue=self.should_continue
            )
        except CredentialsError as exc:
            self.log.error(
                "consumer: the Encord key is unavailable; the whole batch will be retried",
                extra={"stage": title, "error": str(exc)},
            )
            return {item.item_id: exc for item in batch}
        except Exception as exc:
            self._log_batch_error(f"run_batch raised for stage {title}", exc)
            return {item.item_id: exc for item in batch}
        by_id: dict[str, TaskOutcome | BaseException] = {o.item_id: o for o in outcomes}
        return by_id

    def _settle(
        self,
        item: _Valid,
        outcome: TaskOutcome | BaseException | None,
        title: str,
        dead: dict[str, OutgoingMessage],
    ) -> tuple[RecordResult, Callable[[], None]]:
        result = RecordResult(
            item.message_id,
            "failed",
            item.receive_count,
            task_uuid=item.envelope.task_uuid,
            stage_uuid=str(item.envelope.stage_uuid),
            stage_title=title,
        )
        if outcome is None or isinstance(outcome, BaseException):
            exc = outcome or RuntimeError("the runner returned no outcome for this message")
            result.error, result.error_type = str(exc), type(exc).__name__
            self._retry_or_dead_letter(item, result, retryable=True, dead=dead)
            return result, self._lease_call(item, "fail", result.error, result)

        result.duration_ms = outcome.duration_ms
        result.pathway_name = outcome.pathway_name
        if outcome.status in ("succeeded", "skipped"):
            result.status = outcome.status
            result.error = outcome.error
            return result, self._lease_call(item, "complete")
        if outcome.status == "deferred":
            result.status, result.visibility_seconds = "deferred", 0
            return result, self._lease_call(item, "requeue")
        result.error = outcome.error or "the agent failed without a message"
        result.error_type = outcome.error_type or "Error"
        if outcome.traceback:
            self.log.error(
                "consumer: task failed",
                extra={
                    "task_uuid": result.task_uuid,
                    "stage": title,
                    "receive_count": item.receive_count,
                    "traceback": redact(outcome.traceback),
                },
            )
        self._retry_or_dead_letter(item, result, retryable=outcome.retryable, dead=dead)
        return result, self._lease_call(item, "fail", result.error, result)

    def _retry_or_dead_letter(
        self,
        item: _Valid,
        result: RecordResult,
        *,
        retryable: bool,
        dead: dict[str, OutgoingMessage],
    ) -> None:
        if retryable and item.receive_count < self.settings.max_receive_count:
            result.status = "failed"
            result.visibility_seconds = self._backoff(item.receive_count)
            return
        result.status = "dead_lettered"
        dead[item.message_id] = build_dlq_message(
            item.record,
            reason="failed",
            error=result.error or "",
            error_type=result.error_type or "Error",
            receive_count=item.receive_count,
            stage_uuid=result.stage_uuid,
            task_uuid=result.task_uuid,
            limits=self.limits,
        )

    def _lease_call(
        self,
        item: _Valid,
        action: Literal["complete", "fail", "requeue"],
        error: str | None = None,
        result: RecordResult | None = None,
    ) -> Callable[[], None]:
        task_uuid, token = item.envelope.task_uuid, item.run_token

        def finish() -> None:
            try:
                if action == "complete":
                    held = self.leases.complete(task_uuid, token)
                elif action == "fail" and result is not None and result.status == "dead_lettered":
                    # Read when the lease is written, after the DLQ send: a failed send turned
                    # the result back into a retry.
                    held = self.leases.park(task_uuid, token, redact(error or ""), item.message_id)
                elif action == "fail":
                    held = self.leases.fail(task_uuid, token, redact(error or ""))
                else:
                    held = self.leases.requeue(task_uuid, token)
            except Exception as exc:
                self.log.warning(
                    "consumer: could not update the task's lease",
                    extra={"task_uuid": task_uuid, "action": action, "error": str(exc)[:300]},
                )
                return
            if not held:
                # Our run outlived run_until and another delivery took the lease over; it
                # decides the lease's fate now.
                self.log.warning(
                    "consumer: lease no longer held by this run",
                    extra={"task_uuid": task_uuid, "action": action},
                )

        return finish

    @staticmethod
    def _run_all(calls: list[Callable[[], None]]) -> None:
        if len(calls) <= 1:
            for call in calls:
                call()
            return
        with ThreadPoolExecutor(max_workers=min(10, len(calls))) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()

    def _send_dead_letters(self, dead: dict[str, OutgoingMessage], report: ConsumeReport) -> None:
        if not dead:
            return
        sent = self.dlq.send(list(dead.values()))
        for message_id, error in sent.failed.items():
            # Leave the message on the work queue: it comes back, and the queue's redrive
            # policy moves it to the DLQ if this keeps failing.
            result = report.results[message_id]
            self.log.error(
                "consumer: could not send a message to the DLQ; it stays on the work queue",
                extra={"message_id": message_id, "error": error, "task_uuid": result.task_uuid},
            )
            result.status = "failed"
            result.visibility_seconds = self._backoff(result.receive_count)
        for message_id in sent.sent:
            result = report.results[message_id]
            self.log.warning(
                "consumer: message moved to the DLQ",
                extra={
                    "message_id": message_id,
                    "reason": result.status,
                    "task_uuid": result.task_uuid,
                    "error_type": result.error_type,
                    "error": redact(result.error or "")[:1000],
                    "receive_count": result.receive_count,
                },
            )

    def _apply_visibility(
        self, records: Mapping[str, Mapping[str, Any]], report: ConsumeReport
    ) -> None:
        changes: list[tuple[str, int]] = []
        for message_id, result in report.results.items():
            if not result.report_failure or result.visibility_seconds is None:
                continue
            handle = records[message_id].get("receiptHandle")
            if handle:
                changes.append((str(handle), result.visibility_seconds))
        if not changes:
            return
        errors = change_visibility(self.sqs, self.work_queue_url, changes)
        if errors:
            self.log.warning(
                "consumer: could not change the visibility of some failed messages; they come "
                "back after the queue's visibility timeout",
                extra={"errors": list(errors.values())[:5]},
            )

    def _log_batch_error(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, CredentialsError):
            self.log.error(
                f"consumer: {what}: the Encord key is unavailable", extra={"error": str(exc)}
            )
            return
        self.log.error(
            f"consumer: {what}",
            extra={
                "error": redact(f"{type(exc).__name__}: {exc}")[:1000],
                "traceback": redact("".join(traceback.format_exception(exc)))[-4000:],
            },
        )


# -- Lambda glue -------------------------------------------------------------------------------

CONSUMER_SERVICE = "agentkit-consumer"


class RecordNotDone(Exception):
    """Raised for a record that goes back to the queue, so Powertools reports it as failed."""


def require(value: str | None, name: str, what: str) -> str:
    from agent_core.exceptions import ConfigurationError

    if not value:
        raise ConfigurationError(
            f"{name} is not set. It must hold {what} (template.yaml sets it in AWS; "
            "the local stack sets it for local runs)."
        )
    return value


def consumer_from_environment(
    context: LambdaContextLike, *, logger: Logger | logging.Logger | None = None
) -> Consumer:
    """A Consumer configured from the environment (the handler's settings)."""
    from agent_core.pipeline.clients import dynamodb_client, sqs_client
    from agent_core.pipeline.loader import get_runner
    from agent_core.settings import PipelineSettings

    settings = PipelineSettings()
    queue_url = require(settings.work_queue_url, "WORK_QUEUE_URL", "the work queue's URL")
    dlq_url = require(
        settings.dead_letter_queue_url, "DEAD_LETTER_QUEUE_URL", "the dead-letter queue's URL"
    )
    table = require(settings.lease_table_name, "LEASE_TABLE_NAME", "the lease table's name")
    leases = LeaseTable(table, client=dynamodb_client(), ttl_seconds=settings.lease_ttl_seconds)
    return Consumer(
        lambda: get_runner(settings),
        settings=settings,
        sqs=sqs_client(),
        leases=leases,
        work_queue_url=queue_url,
        dead_letter_queue_url=dlq_url,
        context=context,
        logger=logger,
    )


def metrics_by_stage(report: ConsumeReport) -> dict[str, dict[str, float]]:
    from agent_core.pipeline.observability import CONSUMER_METRICS

    per_stage: dict[str, dict[str, float]] = {}
    for result in report.results.values():
        counts = per_stage.setdefault(result.metric_stage, dict.fromkeys(CONSUMER_METRICS, 0.0))
        counts["processed"] += 1
        counts[result.status] += 1
        if result.status == "dead_lettered":
            counts["failed"] += 1
    return per_stage


def handle_sqs_event(
    event: Mapping[str, Any],
    context: LambdaContextLike,
    *,
    logger: Logger,
) -> dict[str, Any]:
    """Process an SQS event and return ``{"batchItemFailures": [...]}`` for the retries only."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from agent_core.pipeline.observability import emit_metrics

    install_log_redaction(logger)
    records = list(event.get("Records") or [])
    if not records:
        logger.warning("consumer: event without SQS records", extra={"keys": sorted(event)[:10]})
        return {"batchItemFailures": []}
    consumer = consumer_from_environment(context, logger=logger)
    report = consumer.process(records)

    def record_handler(record: SQSRecord) -> str:
        result = report.results[record.message_id]
        logger.thread_safe_append_keys(correlation_id=result.task_uuid or record.message_id)
        try:
            logger.info(
                f"task {result.status}",
                extra={
                    "message_id": result.message_id,
                    "task_uuid": result.task_uuid,
                    "stage": result.stage_title,
                    "stage_uuid": result.stage_uuid,
                    "status": result.status,
                    "receive_count": result.receive_count,
                    "pathway": result.pathway_name,
                    "error_type": result.error_type,
                    "error": redact(result.error)[:1000] if result.error else None,
                    "visibility_seconds": result.visibility_seconds,
                    "duration_ms": round(result.duration_ms, 1),
                },
            )
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])
        if result.report_failure:
            raise RecordNotDone(redact(f"{result.status}: {result.error or ''}")[:200])
        return result.status

    # Every record may legitimately go back (all deferred near the timeout): that is a partial
    # response listing all of them, not an error of the invocation.
    processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=dict(event), record_handler=record_handler, processor=processor, context=None
    )
    emit_metrics(
        metrics_by_stage(report),
        service=CONSUMER_SERVICE,
        durations_ms=report.stage_duration_ms,
    )
    logger.info("batch done", extra={"records": len(records), "outcomes": report.counts()})
    return dict(response)
