"""The consumer: one SQS batch in, one ``run_batch`` per stage, ``batchItemFailures`` out.

One type carries a message through (``Delivery``): what was learnt about it is recorded on it
(its envelope or why it is poison, its claim, its outcome), and ``decide`` turns that into one
``Disposition`` in one place:

* ``delete``      the task succeeded or left its stage, or the message is a stale copy;
* ``retry``       it goes back to the queue after ``delay_seconds`` (a failure's backoff, a 429's
                  Retry-After, the rest of a parallel run, 0 for a task handed back unrun);
* ``dead_letter`` a copy with the reason and the error goes to the DLQ, then it is deleted.

Then, in this order: the DLQ copies are sent (a failed send turns the disposition into a retry),
the leases are written once for the whole batch, visibilities are set, and the retries are
returned as ``batchItemFailures``. The invocation answers before Lambda's timeout whatever the
agent does: Encord I/O and each task run against a deadline (``agent_core.pipeline.deadline``).

The kit parks, not SQS: the kit runs a task at most ``MAX_RECEIVE_COUNT - 1`` times and parks it
on the failure of the last run; the queue's own ``maxReceiveCount`` receive is reserved for
parking a task whose runs were killed before they could report ("exhausted"). SQS's redrive only
moves what the kit never saw at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from agent_core.exceptions import PoisonMessageError
from agent_core.message import FOREIGN_MESSAGE_HINT, TaskEnvelope, parse_envelope
from agent_core.pipeline.backoff import SQS_MAX_VISIBILITY_SECONDS, retry_visibility_seconds
from agent_core.pipeline.deadline import DeadlineExceeded, bounded_call
from agent_core.pipeline.dlq import build_dlq_message, lambda_to_sqs_attributes
from agent_core.pipeline.leases import (
    Claim,
    ClaimRequest,
    ClaimStatus,
    Finish,
    FinishAction,
    LeaseRequest,
    LeaseTable,
)
from agent_core.pipeline.loader import PipelineRunner
from agent_core.pipeline.sqs import BatchSender, SqsLimits, change_visibility, message_size
from agent_core.redaction import exception_text, install_log_redaction, redact, traceback_text

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from mypy_boto3_sqs import SQSClient

    from agent_core.models import BatchItem, StageConfig, TaskOutcome
    from agent_core.pipeline.context import LambdaContextLike
    from agent_core.settings import PipelineSettings

__all__ = [
    "CONSUMER_SERVICE",
    "Consumer",
    "Delivery",
    "Disposition",
    "build_dlq_message",
    "consumer_from_environment",
    "decide",
    "handle_sqs_event",
    "lambda_to_sqs_attributes",
    "redact",
    "require",
    "warm_up",
]

_log = logging.getLogger(__name__)

Action = Literal["delete", "retry", "dead_letter"]
# Unparsable messages are counted under this stage in metrics (no stage is known).
INVALID_STAGE = "invalid"


@dataclass(frozen=True)
class Disposition:
    """What happens to a message; ``reason`` is one word for logs and metrics."""

    action: Action
    reason: str
    error: str | None = None
    error_type: str | None = None
    delay_seconds: int = 0


@dataclass
class Delivery:
    """One SQS record on its way through the consumer."""

    record: Mapping[str, Any]
    message_id: str
    receive_count: int
    envelope: TaskEnvelope | None = None
    poison: str | None = None  # why it can never be processed
    stage: StageConfig | None = None
    failure: BaseException | None = None  # a batch-level error before the task could run
    deferred: bool = False  # handed back unrun: out of time before it started
    claim: Claim | None = None
    run_token: str = ""
    # The error the lease kept from an earlier run (read only for a task parked as exhausted).
    last_error: str | None = None
    outcome: TaskOutcome | None = None
    disposition: Disposition | None = None

    @property
    def task_uuid(self) -> str | None:
        return self.envelope.task_uuid if self.envelope else None

    @property
    def undecided(self) -> bool:
        return self.poison is None and self.failure is None and not self.deferred

    @property
    def metric_stage(self) -> str:
        # A poison message's stage is untrusted input: one dimension value for all of them keeps
        # the metric's cardinality bounded.
        if self.stage is not None:
            return self.stage.title
        if self.poison is None and self.envelope is not None:
            return str(self.envelope.stage_uuid)
        return INVALID_STAGE


@dataclass(frozen=True)
class Limits:
    """The numbers ``decide`` needs, from the settings."""

    max_receive_count: int
    backoff_base_seconds: int
    backoff_max_seconds: int

    @property
    def last_run(self) -> int:
        """The receive on which a task runs for the last time; the one after is only for parking
        what was killed (while the queue's redrive moves it on the receive after that)."""
        return max(1, self.max_receive_count - 1)

    def backoff(self, receive_count: int) -> int:
        return retry_visibility_seconds(
            receive_count, self.backoff_base_seconds, self.backoff_max_seconds
        )


def decide(d: Delivery, limits: Limits) -> Disposition:
    """The one place a message's fate is decided, from what was learnt about it."""
    if d.poison is not None:
        return Disposition("dead_letter", "poison", d.poison, "PoisonMessage")
    if d.failure is not None:
        return _failed(
            d,
            limits,
            exception_text(d.failure),
            type(d.failure).__name__,
            retry_after=_retry_after(d.failure),
        )
    if d.deferred:
        return Disposition("retry", "deferred")
    claim = d.claim
    if claim is None:
        return _failed(d, limits, "the task was never claimed", "InternalError")
    if claim.status is ClaimStatus.RUNNING_ELSEWHERE:
        return Disposition("retry", "busy", delay_seconds=claim.retry_after_seconds)
    if claim.status is ClaimStatus.STALE:
        return Disposition("delete", "stale", "a later visit of the task holds its lease")
    if claim.status is ClaimStatus.PARKED:
        return Disposition("delete", "stale", "duplicate of a message already in the DLQ")
    if claim.status is ClaimStatus.ERROR:
        return _failed(d, limits, f"lease table unavailable: {claim.error}", "LeaseError")
    if d.receive_count > limits.last_run and limits.max_receive_count > 1:
        return Disposition(
            "dead_letter",
            "exhausted",
            d.last_error
            or "its earlier runs ended without a result: the invocation was killed (function "
            "timeout, out of memory) before it could report",
            "RunsExhausted",
        )
    outcome = d.outcome
    if outcome is None:
        return _failed(d, limits, "the runner returned no outcome for this message", "Error")
    if outcome.status == "succeeded":
        return Disposition("delete", "succeeded")
    if outcome.status == "skipped":
        return Disposition("delete", "left_stage", outcome.error)
    if outcome.status == "deferred":
        return Disposition("retry", "deferred")
    return _failed(
        d,
        limits,
        outcome.error or "the agent failed without a message",
        outcome.error_type or "Error",
        retryable=outcome.retryable,
        retry_after=outcome.retry_after_seconds,
    )


def _failed(
    d: Delivery,
    limits: Limits,
    error: str,
    error_type: str,
    *,
    retryable: bool = True,
    retry_after: int | None = None,
) -> Disposition:
    if retryable and d.receive_count < limits.last_run:
        delay = max(limits.backoff(d.receive_count), retry_after or 0)
        return Disposition(
            "retry", "failed", error, error_type, min(delay, SQS_MAX_VISIBILITY_SECONDS)
        )
    return Disposition("dead_letter", "failed", error, error_type)


def _retry_after(exc: BaseException) -> int | None:
    """A 429's ``Retry-After`` anywhere in the exception's chain (a cold start's rate-limited
    project fetch arrives wrapped in a ConfigurationError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        value = getattr(current, "retry_after", None)
        if isinstance(value, int) and value > 0:
            return value
        current = current.__cause__ or current.__context__
    return None


def _receive_count(record: Mapping[str, Any]) -> int:
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


def _finish_action(disposition: Disposition) -> FinishAction:
    if disposition.action == "delete":
        return "complete"
    if disposition.action == "dead_letter":
        return "park"
    return "requeue" if disposition.reason == "deferred" else "fail"


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
        self.settings = settings
        self.sqs = sqs
        self.leases = leases
        self.work_queue_url = work_queue_url
        self.context = context
        self.log = logger or _log
        self.sqs_limits = limits or SqsLimits()
        self.dlq = BatchSender(client=sqs, queue_url=dead_letter_queue_url, limits=self.sqs_limits)
        self.limits = Limits(
            settings.max_receive_count,
            settings.retry_backoff_base_seconds,
            settings.retry_backoff_max_seconds,
        )
        # The invocation's deadline, and the reserve kept after the work for committing to
        # Encord, the DLQ send and the lease writes (TIME_GUARD_MS).
        now = time.monotonic()
        self.deadline = now + context.get_remaining_time_in_millis() / 1000
        self.reserve = settings.time_guard_ms / 1000
        self.stage_duration_ms: dict[str, float] = {}

    @property
    def work_until(self) -> float:
        return self.deadline - self.reserve

    def should_continue(self) -> bool:
        # Asks the context each time (between tasks): it is the runtime's clock.
        return self.context.get_remaining_time_in_millis() / 1000 > self.reserve

    # -- the batch ----------------------------------------------------------------------------

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[Delivery]:
        deliveries: dict[str, Delivery] = {}
        for record in records:
            # Lambda may hand one message over twice in a batch; it is handled once.
            message_id = str(record.get("messageId", ""))
            if message_id not in deliveries:
                deliveries[message_id] = Delivery(record, message_id, _receive_count(record))
        batch = list(deliveries.values())
        for d in batch:
            self._parse(d)
        self._match_stages([d for d in batch if d.undecided])
        self._claim([d for d in batch if d.undecided])
        self._run([d for d in batch if self._runnable(d)])
        for d in batch:
            d.disposition = decide(d, self.limits)
        self._send_dead_letters([d for d in batch if _action(d) == "dead_letter"])
        self._write_leases(batch)
        self._apply_visibility([d for d in batch if _action(d) == "retry"])
        return batch

    def _runnable(self, d: Delivery) -> bool:
        return (
            d.undecided
            and d.claim is not None
            and d.claim.status is ClaimStatus.CLAIMED
            and d.receive_count <= self.limits.last_run
        )

    def _parse(self, d: Delivery) -> None:
        # One message we cannot read must never fail its neighbours: whatever parsing raises,
        # the message is poison.
        try:
            body = d.record.get("body")
            if not isinstance(body, str):
                raise PoisonMessageError(f"record has no message body. {FOREIGN_MESSAGE_HINT}")
            size = message_size(body, lambda_to_sqs_attributes(d.record.get("messageAttributes")))
            if size > self.sqs_limits.max_message_bytes:
                raise PoisonMessageError(
                    f"message is {size} bytes (body and attributes); SQS and this consumer "
                    f"accept at most {self.sqs_limits.max_message_bytes}, and the producer never "
                    f"sends more. {FOREIGN_MESSAGE_HINT}"
                )
            d.envelope = parse_envelope(body)
        except PoisonMessageError as exc:
            d.poison = exception_text(exc)
        except Exception as exc:
            d.poison = f"message could not be read ({type(exc).__name__}). {FOREIGN_MESSAGE_HINT}"

    def _runner(self) -> PipelineRunner:
        source = self._runner_or_factory
        return source if isinstance(source, PipelineRunner) else source()

    def _deferred_for_time(self, batch: list[Delivery]) -> bool:
        """Too little time to start anything: hand the deliveries back at once, unrun."""
        if self.should_continue():
            return False
        for d in batch:
            d.deferred = True
        return True

    def _match_stages(self, batch: list[Delivery]) -> None:
        if not batch or self._deferred_for_time(batch):
            return

        def load() -> tuple[PipelineRunner, dict[UUID, StageConfig]]:
            runner = self._runner()
            return runner, {c.stage_uuid: c for c in runner.stage_configs()}

        try:
            # A cold start (the agent module, the Encord project) is bounded like the rest: a
            # slow Encord hands the batch back instead of letting Lambda kill it.
            self._runner_or_factory, configs = bounded_call(
                load, deadline=self.work_until, what="loading the runner"
            )
        except Exception as exc:
            # Without the stages nothing can be run or judged; every message waits for a retry.
            self._log_batch_error("could not load the runner's stages", exc)
            for d in batch:
                d.failure = exc
            return
        expected_project = self._runner_or_factory.project_hash
        for d in batch:
            envelope = d.envelope
            assert envelope is not None
            if envelope.project_hash != expected_project:
                d.poison = (
                    f"message is for project {envelope.project_hash}, but this consumer runs "
                    f"project {expected_project}; send it to that project's queue"
                )
            elif envelope.stage_uuid not in configs:
                known = ", ".join(f"{c.title!r} ({c.stage_uuid})" for c in configs.values())
                d.poison = (
                    f"stage {envelope.stage_name or ''} ({envelope.stage_uuid}) has no function "
                    f"in this runner; it implements: {known or 'no stages'}. Deploy the agent "
                    "module that registers this stage (AGENT_MODULE), then replay the message "
                    "from the DLQ (`agentkit dlq replay`)"
                )
            else:
                d.stage = configs[envelope.stage_uuid]

    def _claim(self, batch: list[Delivery]) -> None:
        if not batch or self._deferred_for_time(batch):
            return
        requests: list[ClaimRequest] = []
        for d in batch:
            envelope = d.envelope
            assert envelope is not None
            d.run_token = f"{self.context.aws_request_id}:{d.message_id}"
            requests.append(
                ClaimRequest(
                    LeaseRequest(
                        envelope.task_uuid,
                        str(envelope.stage_uuid),
                        envelope.project_hash,
                        visit=envelope.visit,
                    ),
                    run_token=d.run_token,
                    message_id=d.message_id,
                    origin=envelope.origin,
                    first_receive=d.receive_count == 1,
                )
            )
        run_seconds = max(0.0, self.deadline - time.monotonic())
        try:
            claims = bounded_call(
                lambda: self.leases.claim_many(requests, run_seconds=run_seconds),
                deadline=self.work_until,
                what="claiming the batch's leases",
            )
        except Exception as exc:
            # Never run without a lease: a parallel duplicate could run too.
            claims = [Claim(ClaimStatus.ERROR, error=exception_text(exc))] * len(batch)
        for d, claim in zip(batch, claims, strict=True):
            d.claim = claim
            if claim.status is ClaimStatus.CLAIMED and d.receive_count > self.limits.last_run:
                # Parked without running: its earlier runs were killed. Their last error, if one
                # was recorded, is the best reason to give (one read, on this rare path only).
                try:
                    assert d.task_uuid is not None
                    lease = self.leases.get(d.task_uuid)
                    d.last_error = lease.last_error if lease else None
                except Exception:
                    d.last_error = None

    def _run(self, batch: list[Delivery]) -> None:
        """One run_batch per stage, bounded by the invocation's deadline."""
        from agent_core.models import BatchItem

        if not batch:
            return
        groups: dict[UUID, list[Delivery]] = {}
        for d in batch:
            assert d.envelope is not None
            groups.setdefault(d.envelope.stage_uuid, []).append(d)
        runner = self._runner()
        for stage_uuid, group in groups.items():
            title = group[0].stage.title if group[0].stage else str(stage_uuid)
            if self._deferred_for_time(group):
                continue
            items: list[BatchItem] = []
            for d in group:
                assert d.envelope is not None and d.claim is not None
                items.append(
                    BatchItem(
                        item_id=d.message_id,
                        task=d.envelope.task,
                        label_row_metadata=d.envelope.label_row_metadata,
                        verify_in_stage=not d.claim.first_delivery,
                    )
                )
            started = time.monotonic()
            try:
                outcomes = runner.run_batch(
                    stage_uuid,
                    items,
                    should_continue=self.should_continue,
                    deadline=self.work_until,
                    commit_deadline=self.deadline - self.reserve / 2,
                )
            except Exception as exc:
                self._log_batch_error(f"run_batch raised for stage {title}", exc)
                for d in group:
                    d.failure = exc
                continue
            self.stage_duration_ms[title] = (time.monotonic() - started) * 1000
            by_id = {o.item_id: o for o in outcomes}
            for d in group:
                d.outcome = by_id.get(d.message_id)
                if d.outcome is not None and d.outcome.status == "failed":
                    self.log.error(
                        "consumer: task failed",
                        extra={
                            "task_uuid": d.task_uuid,
                            "stage": title,
                            "receive_count": d.receive_count,
                            "error": redact(d.outcome.error or "")[:1000],
                            "traceback": redact(d.outcome.traceback or "")[-4000:],
                        },
                    )

    def _send_dead_letters(self, batch: list[Delivery]) -> None:
        if not batch:
            return
        messages = {}
        for d in batch:
            disposition = d.disposition
            assert disposition is not None
            messages[d.message_id] = build_dlq_message(
                d.record,
                reason="poison" if disposition.reason == "poison" else "failed",
                error=disposition.error or "",
                error_type=disposition.error_type or "Error",
                receive_count=d.receive_count,
                stage_uuid=str(d.envelope.stage_uuid) if d.envelope else None,
                task_uuid=d.task_uuid,
                limits=self.sqs_limits,
            )
        try:
            report = bounded_call(
                lambda: self.dlq.send(list(messages.values())),
                deadline=self.deadline - self.reserve / 4,
                what="sending to the DLQ",
            )
            failed = dict(report.failed)
        except Exception as exc:
            failed = dict.fromkeys(messages, exception_text(exc))
        for d in batch:
            if d.message_id not in failed:
                self.log.warning(
                    "consumer: message moved to the DLQ",
                    extra={
                        "message_id": d.message_id,
                        "task_uuid": d.task_uuid,
                        "reason": d.disposition.reason if d.disposition else None,
                    },
                )
                continue
            if d.message_id in failed:
                # It stays on the work queue and is parked on a later receive.
                self.log.error(
                    "consumer: could not send a message to the DLQ; it stays on the work queue",
                    extra={"message_id": d.message_id, "error": failed[d.message_id]},
                )
                previous = d.disposition
                assert previous is not None
                d.disposition = Disposition(
                    "retry",
                    "dlq_unavailable",
                    previous.error,
                    previous.error_type,
                    self.limits.backoff(d.receive_count),
                )

    def _write_leases(self, batch: list[Delivery]) -> None:
        """Every claimed run's lease, written once, after the DLQ send, in one call."""
        finishes: list[Finish] = []
        for d in batch:
            if d.claim is None or d.claim.status is not ClaimStatus.CLAIMED:
                continue
            disposition = d.disposition
            assert disposition is not None and d.task_uuid is not None
            finishes.append(
                Finish(
                    d.task_uuid,
                    d.run_token,
                    _finish_action(disposition),
                    error=redact(disposition.error or "") or None,
                    message_id=d.message_id,
                )
            )
        if not finishes:
            return
        try:
            held = bounded_call(
                lambda: self.leases.finish_many(finishes),
                deadline=self.deadline - self.reserve / 8,
                what="writing the batch's leases",
            )
        except Exception as exc:
            self.log.warning(
                "consumer: could not update the leases; they end at run_until",
                extra={"error": exception_text(exc)[:300]},
            )
            return
        lost = [t for t, ok in held.items() if ok is not True]
        if lost:
            # False: our run outlived run_until and another delivery took the lease over; None:
            # DynamoDB failed. Either way the lease's run_until bounds what is left behind.
            self.log.warning("consumer: leases not updated", extra={"task_uuids": lost[:20]})

    def _apply_visibility(self, batch: list[Delivery]) -> None:
        changes: list[tuple[str, int]] = []
        for d in batch:
            handle = d.record.get("receiptHandle")
            if handle and d.disposition is not None:
                changes.append((str(handle), d.disposition.delay_seconds))
        if not changes:
            return
        try:
            errors = bounded_call(
                lambda: change_visibility(self.sqs, self.work_queue_url, changes),
                deadline=self.deadline - self.reserve / 16,
                what="setting visibilities",
            )
        except DeadlineExceeded as exc:
            errors = {"*": str(exc)}
        if errors:
            self.log.warning(
                "consumer: could not change the visibility of some failed messages; they come "
                "back after the queue's visibility timeout",
                extra={"errors": list(errors.values())[:5]},
            )

    def _log_batch_error(self, what: str, exc: BaseException) -> None:
        from agent_core.exceptions import CredentialsError

        if isinstance(exc, CredentialsError):
            what += ": the Encord key is unavailable; the batch will be retried"
        self.log.error(
            f"consumer: {what}",
            extra={
                "error": f"{type(exc).__name__}: {exception_text(exc)}"[:1000],
                "traceback": traceback_text(exc)[-4000:],
            },
        )


def _action(d: Delivery) -> Action | None:
    return d.disposition.action if d.disposition else None


# -- Lambda glue -------------------------------------------------------------------------------

CONSUMER_SERVICE = "agentkit-consumer"


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
    leases = LeaseTable(
        table,
        client=dynamodb_client(),
        ttl_seconds=settings.lease_ttl_seconds,
        run_margin_seconds=settings.lease_run_margin_seconds,
    )
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


def warm_up() -> None:
    """Work for Lambda's init phase, which has its own time limit apart from the function
    timeout: the heavy imports and the AWS clients, so the first invocation's clock is spent on
    its batch (only in Lambda: ``AWS_LAMBDA_FUNCTION_NAME`` set). The runner also starts loading,
    in the background: a slow Encord at a cold start then delays no init, and the first invocation
    waits for the load only as long as its deadline allows. Never raises."""
    import os
    import threading

    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return  # imported outside Lambda (a test, a script): stay light
    try:
        import encord.user_client  # noqa: F401
        from aws_lambda_powertools.metrics import EphemeralMetrics  # noqa: F401

        from agent_core.pipeline.clients import dynamodb_client, sqs_client

        sqs_client()
        dynamodb_client()
    except Exception:
        return

    def preload() -> None:
        from agent_core.pipeline.loader import get_runner
        from agent_core.settings import PipelineSettings

        # On failure the first invocation loads it again, and reports the error.
        with contextlib.suppress(Exception):
            get_runner(PipelineSettings())

    threading.Thread(target=preload, name="runner-preload", daemon=True).start()


# The dashboard's and alarms' metric for each (action, reason): one place maps the consumer's
# dispositions onto observability.CONSUMER_METRICS ("failed" counts every failed run, retried or
# dead-lettered, as before).
_METRICS_BY_REASON: dict[str, tuple[str, ...]] = {
    "succeeded": ("succeeded",),
    "left_stage": ("skipped",),
    "stale": ("skipped",),
    "poison": ("poison",),
    "deferred": ("deferred",),
    "busy": ("busy",),
}


def metrics_by_stage(batch: Sequence[Delivery]) -> dict[str, dict[str, float]]:
    """Per stage: every message processed, and its disposition in CONSUMER_METRICS' terms."""
    from agent_core.pipeline.observability import CONSUMER_METRICS

    per_stage: dict[str, dict[str, float]] = {}
    for d in batch:
        assert d.disposition is not None
        counts = per_stage.setdefault(d.metric_stage, dict.fromkeys(CONSUMER_METRICS, 0.0))
        counts["processed"] += 1
        names = _METRICS_BY_REASON.get(d.disposition.reason)
        if names is None:  # a failed run: retried, or dead-lettered for good
            dead = d.disposition.action == "dead_letter"
            names = ("failed", "dead_lettered") if dead else ("failed",)
        for name in names:
            counts[name] += 1
    return per_stage


def handle_sqs_event(
    event: Mapping[str, Any],
    context: LambdaContextLike,
    *,
    logger: Logger,
) -> dict[str, Any]:
    """Process an SQS event and return ``{"batchItemFailures": [...]}`` for the retries only.

    The decisions are made by ``decide``; this only reports them, so Powertools' batch processor
    (which would re-format decisions already made) is not used.
    """
    from agent_core.pipeline.observability import emit_metrics

    install_log_redaction(logger)
    records = list(event.get("Records") or [])
    if not records:
        logger.warning("consumer: event without SQS records", extra={"keys": sorted(event)[:10]})
        return {"batchItemFailures": []}
    consumer = consumer_from_environment(context, logger=logger)
    batch = consumer.process(records)
    failures: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for d in batch:
        disposition = d.disposition
        assert disposition is not None
        counts[disposition.reason] = counts.get(disposition.reason, 0) + 1
        if disposition.action == "retry":
            failures.append({"itemIdentifier": d.message_id})
        logger.info(
            f"task {disposition.action}: {disposition.reason}",
            extra={
                "correlation_id": d.task_uuid or d.message_id,
                "message_id": d.message_id,
                "task_uuid": d.task_uuid,
                "stage": d.stage.title if d.stage else None,
                "action": disposition.action,
                "reason": disposition.reason,
                "receive_count": d.receive_count,
                "pathway": d.outcome.pathway_name if d.outcome else None,
                "error_type": disposition.error_type,
                "error": redact(disposition.error)[:1000] if disposition.error else None,
                "delay_seconds": disposition.delay_seconds,
                "duration_ms": round(d.outcome.duration_ms, 1) if d.outcome else 0.0,
            },
        )
    emit_metrics(
        metrics_by_stage(batch),
        service=CONSUMER_SERVICE,
        durations_ms=consumer.stage_duration_ms,
    )
    logger.info("batch done", extra={"records": len(records), "outcomes": counts})
    return {"batchItemFailures": failures}
