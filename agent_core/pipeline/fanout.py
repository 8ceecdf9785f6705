"""The producer: list the tasks of every stage the runner implements and enqueue one message per
task that is not already in flight.

Per page of tasks: take leases (one conditional transaction), check that the leased tasks are
still in the stage (one request: the page was listed before the leases were taken), list the
label-row metadata of the leased tasks in ONE request when the stage's function needs it, build the
envelopes, send them
with SendMessageBatch (several calls in flight, failed entries retried), then confirm the leases of
the sent messages and release the others so that a later tick tries them again. Listing stops at
MAX_TASKS_PER_RUN leased tasks or when the Lambda's clock runs low, whichever comes first.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_core.encord_io import list_label_row_metadata, metadata_to_dict, tasks_in_stage
from agent_core.exceptions import ConfigurationError, CredentialsError
from agent_core.message import TaskEnvelope, task_visit
from agent_core.pipeline.leases import LeaseRequest, LeaseTable
from agent_core.pipeline.sqs import BatchSender, OutgoingMessage, SqsLimits
from agent_core.redaction import redact

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from encord.orm.label_row import LabelRowMetadata
    from encord.project import Project
    from encord.workflow.stages.agent import AgentStage, AgentTask
    from mypy_boto3_sqs import SQSClient

    from agent_core.models import StageConfig
    from agent_core.pipeline.context import LambdaContextLike
    from agent_core.pipeline.loader import PipelineRunner

_log = logging.getLogger(__name__)

# Tasks handled per round. The emulator and Encord return 100 tasks per page, so one label-row
# listing per page of tasks.
DEFAULT_PAGE_SIZE = 100


@dataclass
class StageSummary:
    stage_uuid: str
    stage_title: str
    listed: int = 0  # tasks read from Encord and considered this run
    enqueued: int = 0  # messages sent (one per task)
    skipped_in_flight: int = 0  # tasks leased by an earlier message still in flight
    failed_to_send: int = 0  # leased but not sent (SQS errors, or too big even without metadata)
    left_stage: int = 0  # left the stage between the listing and the lease (lease released)
    lease_errors: int = 0  # DynamoDB errors while leasing (the task waits for the next tick)
    metadata_dropped: int = 0  # envelopes sent without label-row metadata to fit SQS's limit
    metadata_requests: int = 0
    truncated: bool = False  # stopped before the end of the stage's task list
    truncated_reason: str | None = None  # "max_tasks" | "time"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProduceReport:
    run_id: str
    stages: list[StageSummary] = field(default_factory=list)
    duration_ms: float = 0.0

    def totals(self) -> dict[str, int]:
        keys = (
            "listed",
            "enqueued",
            "skipped_in_flight",
            "failed_to_send",
            "lease_errors",
            "metadata_dropped",
            "left_stage",
        )
        return {key: sum(int(getattr(s, key)) for s in self.stages) for key in keys}

    @property
    def truncated(self) -> bool:
        return any(s.truncated for s in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "duration_ms": round(self.duration_ms, 1),
            "truncated": self.truncated,
            "totals": self.totals(),
            "stages": {s.stage_title: s.as_dict() for s in self.stages},
        }


def new_run_id() -> str:
    return f"producer:{uuid.uuid4()}"


# -- the producer ------------------------------------------------------------------------------


class Producer:
    """One producer run over every stage of one runner."""

    def __init__(
        self,
        runner: PipelineRunner,
        *,
        project: Project,
        queue_url: str,
        leases: LeaseTable,
        sqs: SQSClient,
        max_tasks: int,
        time_guard_ms: int,
        remaining_ms: Callable[[], int],
        run_id: str | None = None,
        logger: Logger | logging.Logger | None = None,
        limits: SqsLimits | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        send_workers: int = 4,
    ) -> None:
        self.runner = runner
        self.project = project
        self.leases = leases
        self.run_id = run_id or new_run_id()
        self.max_tasks = max_tasks
        self.time_guard_ms = time_guard_ms
        self.remaining_ms = remaining_ms
        self.page_size = max(1, page_size)
        self.log = logger or _log
        self.limits = limits or SqsLimits()
        self.sender = BatchSender(
            client=sqs, queue_url=queue_url, limits=self.limits, max_workers=send_workers
        )
        self._budget = max_tasks

    def _out_of_time(self) -> bool:
        return self.remaining_ms() < self.time_guard_ms

    def run(self) -> ProduceReport:
        started = time.monotonic()
        report = ProduceReport(run_id=self.run_id)
        stop_reason: str | None = None
        for config in self.runner.stage_configs():
            summary = StageSummary(stage_uuid=str(config.stage_uuid), stage_title=config.title)
            report.stages.append(summary)
            if stop_reason is None and self._out_of_time():
                stop_reason = "time"
            if stop_reason is None and self._budget <= 0:
                stop_reason = "max_tasks"
            if stop_reason is not None:
                summary.truncated, summary.truncated_reason = True, stop_reason
                continue
            try:
                self._produce_stage(config, summary)
            except (CredentialsError, ConfigurationError):
                raise
            except Exception as exc:
                # One stage's trouble (an Encord error after the SDK's retries, a stage removed
                # from the workflow) must not stop the others.
                summary.error = redact(f"{type(exc).__name__}: {exc}")[:1000]
                self.log.exception(
                    "producer: stage failed",
                    extra={"stage": config.title, "stage_uuid": str(config.stage_uuid)},
                )
            if summary.truncated:
                stop_reason = summary.truncated_reason
        report.duration_ms = (time.monotonic() - started) * 1000
        return report

    def _produce_stage(self, config: StageConfig, summary: StageSummary) -> None:
        from encord.workflow.stages.agent import AgentStage

        stage = self.project.workflow.get_stage(uuid=config.stage_uuid, type_=AgentStage)
        tasks: Iterator[AgentTask] = iter(stage.get_tasks())
        while True:
            if self._out_of_time():
                summary.truncated, summary.truncated_reason = True, "time"
                return
            page = list(itertools.islice(tasks, self.page_size))
            if not page:
                return
            reason = self._produce_page(config, stage, page, summary)
            if reason is None and self._budget <= 0:
                # The cap is reached exactly at the end of a page: only truncated if more wait.
                following = next(tasks, None)
                if following is None:
                    return
                reason = "max_tasks"
            if reason is not None:
                summary.truncated, summary.truncated_reason = True, reason
                return

    def _produce_page(
        self,
        config: StageConfig,
        stage: AgentStage,
        page: list[AgentTask],
        summary: StageSummary,
    ) -> str | None:
        """Lease, describe and send one page; returns why it stopped early, if it did."""
        stage_uuid = str(config.stage_uuid)
        project_hash = self.runner.project_hash
        leased: list[AgentTask] = []
        remaining = list(page)
        stopped: str | None = None
        while remaining:
            if self._budget <= 0:
                stopped = "max_tasks"
                break
            if self._out_of_time():
                stopped = "time"
                break
            take, remaining = remaining[: self._budget], remaining[self._budget :]
            # One transaction per page: tasks in flight are refused inside it (docs/LEASES.md).
            results = self.leases.acquire_many(
                [
                    LeaseRequest(str(t.uuid), stage_uuid, project_hash, visit=_visit(stage_uuid, t))
                    for t in take
                ],
                self.run_id,
            )
            for task in take:
                summary.listed += 1
                result = results[str(task.uuid)]
                if result is True:
                    leased.append(task)
                    self._budget -= 1
                elif result is False:
                    summary.skipped_in_flight += 1
                else:
                    summary.lease_errors += 1
        if leased:
            leased = self._still_in_stage(stage, leased, summary)
        if leased:
            self._send_leased(config, leased, summary)
        return stopped

    def _still_in_stage(
        self, stage: AgentStage, leased: list[AgentTask], summary: StageSummary
    ) -> list[AgentTask]:
        """The leased tasks that are still in the stage; the others' leases are released.

        The page was listed before its leases were taken, and a consumer may have moved a task on
        and dropped its lease in between. Its message would be a first delivery, which the
        consumer runs without checking the stage, so the agent would run again on a task that has
        left (Encord then refuses the second proceed, but the run is wasted). Checked after the
        lease was taken, any such move is visible: the consumer commits before it drops a lease.
        """
        present: set[str] = set()
        try:
            present.update(
                str(t.uuid) for t in tasks_in_stage(stage, [str(t.data_hash) for t in leased])
            )
        except Exception as exc:
            # Unknown: enqueue nothing rather than risk it; the next tick tries these again.
            self.log.warning(
                "producer: could not check that leased tasks are still in the stage; leases "
                "released for a later tick",
                extra={"stage": stage.title, "error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            summary.failed_to_send += len(leased)
            self._release([str(t.uuid) for t in leased])
            return []
        gone = [str(t.uuid) for t in leased if str(t.uuid) not in present]
        if gone:
            summary.left_stage += len(gone)
            self._release(gone)
        return [t for t in leased if str(t.uuid) in present]

    def _release(self, task_uuids: list[str]) -> None:
        released = self.leases.release_many(task_uuids, self.run_id)
        stuck = [t for t, ok in released.items() if ok is None]
        if stuck:
            self.log.warning(
                "producer: could not release leases; the tasks wait for the pending expiry",
                extra={"task_uuids": stuck[:20]},
            )

    def _metadata_for(
        self, config: StageConfig, tasks: list[AgentTask], summary: StageSummary
    ) -> dict[str, dict[str, Any]]:
        if not config.needs_label_row_metadata:
            return {}
        hashes = sorted({str(t.data_hash) for t in tasks})
        summary.metadata_requests += 1
        try:
            rows = list_label_row_metadata(
                self.project, hashes, config.label_row_metadata_include_args
            )
        except Exception as exc:
            # The consumer lists what an envelope lacks, so this only costs it a request.
            self.log.warning(
                "producer: label-row metadata listing failed; sending tasks without it",
                extra={
                    "stage": config.title,
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                },
            )
            return {}
        by_branch = {(r.data_hash, r.branch_name): r for r in rows}
        by_hash: dict[str, list[LabelRowMetadata]] = {}
        for r in rows:
            by_hash.setdefault(r.data_hash, []).append(r)
        found: dict[str, dict[str, Any]] = {}
        for task in tasks:
            data_hash = str(task.data_hash)
            row: LabelRowMetadata | None = by_branch.get((data_hash, task.label_branch_name))
            if row is None and len(by_hash.get(data_hash, [])) == 1:
                row = by_hash[data_hash][0]
            if row is not None:
                found[str(task.uuid)] = metadata_to_dict(row)
        return found

    def _send_leased(
        self, config: StageConfig, tasks: list[AgentTask], summary: StageSummary
    ) -> None:
        import json

        metadata = self._metadata_for(config, tasks, summary)
        messages: list[OutgoingMessage] = []
        too_big: list[str] = []
        for task in tasks:
            task_uuid = str(task.uuid)
            envelope = TaskEnvelope(
                project_hash=self.runner.project_hash,
                stage_uuid=config.stage_uuid,
                stage_name=config.title,
                task=json.loads(task.model_dump_json()),
                label_row_metadata=metadata.get(task_uuid),
                origin=self.run_id,
            )
            message = OutgoingMessage(key=task_uuid, body=envelope.to_body())
            if message.size > self.limits.max_message_bytes and envelope.label_row_metadata:
                # Never fail the run over metadata: the consumer lists it itself when absent.
                summary.metadata_dropped += 1
                bare = envelope.model_copy(update={"label_row_metadata": None})
                message = OutgoingMessage(key=task_uuid, body=bare.to_body())
                self.log.warning(
                    "producer: envelope too large for SQS, sent without label-row metadata",
                    extra={"task_uuid": task_uuid, "limit": self.limits.max_message_bytes},
                )
            if message.size > self.limits.max_message_bytes:
                too_big.append(task_uuid)
                continue
            messages.append(message)

        report = self.sender.send(messages)
        failed = too_big + list(report.failed)
        for task_uuid, error in report.failed.items():
            self.log.error(
                "producer: message not sent; lease released for a later tick",
                extra={"task_uuid": task_uuid, "error": error},
            )
        for task_uuid in too_big:
            self.log.error(
                "producer: task spec alone exceeds SQS's message limit; not enqueued",
                extra={"task_uuid": task_uuid, "limit": self.limits.max_message_bytes},
            )
        summary.enqueued += len(report.sent)
        summary.failed_to_send += len(failed)
        if failed:
            self._release(failed)
        if report.sent:
            confirmed = self.leases.confirm_many(list(report.sent), self.run_id)
            unconfirmed = [t for t, ok in confirmed.items() if ok is None]
            if unconfirmed:
                self.log.warning(
                    "producer: could not confirm leases of sent messages",
                    extra={"task_uuids": unconfirmed[:20]},
                )


def _visit(stage_uuid: str, task: AgentTask) -> str:
    import json

    # From the same JSON the envelope carries, so producer and consumer name the visit alike.
    spec: dict[str, Any] = json.loads(task.model_dump_json(include={"updated_at"}))
    return task_visit(stage_uuid, spec)


# -- project access ----------------------------------------------------------------------------

_projects: dict[str, Project] = {}


def runner_project(runner: PipelineRunner) -> Project:
    """The runner's Encord project, fetched once per process."""
    project = getattr(runner, "project", None)
    if project is not None:
        return project  # type: ignore[no-any-return]
    cached = _projects.get(runner.project_hash)
    if cached is None:
        from agent_core.settings import cached_user_client

        cached = cached_user_client().get_project(runner.project_hash)
        _projects[runner.project_hash] = cached
    return cached


# -- Lambda glue -------------------------------------------------------------------------------

PRODUCER_SERVICE = "agentkit-producer"


def produce_from_environment(
    context: LambdaContextLike,
    *,
    logger: Logger | logging.Logger | None = None,
    run_id: str | None = None,
) -> ProduceReport:
    """One producer run configured from the environment (the handler's settings)."""
    from agent_core.pipeline.clients import dynamodb_client, sqs_client
    from agent_core.pipeline.consume import require
    from agent_core.pipeline.loader import get_runner
    from agent_core.settings import PipelineSettings

    settings = PipelineSettings()
    queue_url = require(settings.work_queue_url, "WORK_QUEUE_URL", "the work queue's URL")
    table = require(settings.lease_table_name, "LEASE_TABLE_NAME", "the lease table's name")
    runner = get_runner(settings)
    producer = Producer(
        runner,
        project=runner_project(runner),
        queue_url=queue_url,
        leases=LeaseTable(table, client=dynamodb_client(), ttl_seconds=settings.lease_ttl_seconds),
        sqs=sqs_client(),
        max_tasks=settings.max_tasks_per_run,
        time_guard_ms=settings.time_guard_ms,
        remaining_ms=context.get_remaining_time_in_millis,
        run_id=run_id or f"producer:{context.aws_request_id}",
        logger=logger,
    )
    return producer.run()


def handle_scheduled_event(
    event: Mapping[str, Any] | None,
    context: LambdaContextLike,
    *,
    logger: Logger | logging.Logger,
) -> dict[str, Any]:
    """Run the producer for an EventBridge scheduled event; returns the run's summary."""
    from agent_core.exceptions import AgentkitError
    from agent_core.pipeline.observability import PRODUCER_RUN_DONE_LOG, emit_metrics
    from agent_core.redaction import install_log_redaction

    install_log_redaction(logger)
    try:
        report = produce_from_environment(context, logger=logger)
    except AgentkitError as exc:
        # Configuration or credentials: nothing can be enqueued until someone fixes it.
        logger.error(
            "producer: cannot run",
            extra={"error": str(exc), "error_type": type(exc).__name__},
        )
        raise
    summary = report.as_dict()
    summary["event_id"] = (event or {}).get("id")
    per_stage: dict[str, dict[str, float]] = {}
    for stage in report.stages:
        per_stage[stage.stage_title] = {
            "listed": stage.listed,
            "enqueued": stage.enqueued,
            "skipped_in_flight": stage.skipped_in_flight,
            "failed_to_send": stage.failed_to_send,
            "lease_errors": stage.lease_errors,
            "left_stage": stage.left_stage,
            "truncated": 1 if stage.truncated else 0,
            "stage_errors": 1 if stage.error else 0,
        }
    emit_metrics(per_stage, service=PRODUCER_SERVICE)
    for stage in report.stages:
        log = logger.error if stage.error else logger.info
        log(f"producer: stage {stage.stage_title}", extra={"summary": stage.as_dict()})
    logger.info(PRODUCER_RUN_DONE_LOG, extra={"totals": report.totals(), "run_id": report.run_id})
    return summary
