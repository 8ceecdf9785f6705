"""``QueueRunner``: stage functions executed from task specs taken off a queue.

``@runner.stage(...)`` returns a wrapper that takes ``AgentTask.model_dump_json()`` (or a list of
them) and returns one ``TaskCompletionResult`` JSON, as in encord-agents. The consumer Lambda uses the
batch API instead: ``run_batch`` runs a batch of queue messages for one stage with Encord I/O done
once per batch and one outcome per message, and ``stage_configs`` tells the producer what each
stage will need.

The project (and its ontology) is fetched once, when the runner is created, and reused by every
batch: a warm Lambda does no project request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agent_core.exceptions import ConfigurationError, PrintableError
from agent_core.models import (
    AgentTaskConfig,
    BatchItem,
    LabelRowInitialiseLabelsArgs,
    LabelRowMetadataIncludeArgs,
    StageConfig,
    TaskCompletionResult,
    TaskOutcome,
)
from agent_core.runner_base import (
    RunnerAgent,
    RunnerBase,
    WorkItem,
    caller_locals,
    execute_batch,
)

if TYPE_CHECKING:
    from encord.project import Project
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentStage

__all__ = ["QueueRunner", "StageWrapper"]


class StageWrapper:
    """What ``QueueRunner.stage`` returns: call it with task JSON spec(s), get result JSON back.

    As in encord-agents: ``wrapper(task.model_dump_json())`` returns one ``TaskCompletionResult``
    JSON string; ``wrapper([spec, spec, ...])`` runs them as one batch and returns one
    ``TaskCompletionResult`` JSON whose ``task_uuid`` lists every task, ``success`` the UUIDs of
    the tasks that succeeded and ``pathway`` the pathways taken. A batch is all or nothing: if the
    agent raises on one task, nothing of the batch is applied and the result is a failure with the
    traceback; a pathway the stage does not have raises ``PathwayNotFoundError`` (a
    ``PrintableError``) out of the wrapper. A task that is no longer in the stage is not run and
    counts as not successful. The undecorated function stays available as ``wrapper.__wrapped__``.
    """

    def __init__(self, runner: QueueRunner, agent: RunnerAgent, stage: AgentStage) -> None:
        self._runner = runner
        self._agent = agent
        self._stage = stage
        functools.update_wrapper(self, agent.callable)

    def __call__(self, task_spec: str | list[str]) -> str:
        specs: list[str] = [task_spec] if isinstance(task_spec, str) else list(task_spec)
        # Parsed as encord-agents does: a malformed spec raises pydantic's ValidationError.
        confs = [AgentTaskConfig.model_validate_json(spec) for spec in specs]
        work = [
            QueueRunner._work_item(
                BatchItem(item_id=str(index), task=json.loads(spec), verify_in_stage=True),
                self._stage,
            )
            for index, spec in enumerate(specs)
        ]
        execute_batch(
            work,
            self._agent,
            self._runner._project,
            self._stage,
            self._runner.client,
            num_retries=0,
            stop_on=lambda _: True,
        )
        stopper = next((w for w in work if w.outcome and w.outcome.status == "failed"), None)
        if stopper is not None:
            if isinstance(stopper.error, PrintableError):
                raise stopper.error
            assert stopper.outcome is not None
            return TaskCompletionResult(
                task_uuid=[c.task_uuid for c in confs] if len(confs) > 1 else confs[0].task_uuid,
                stage_uuid=self._stage.uuid,
                success=False,
                error=stopper.outcome.traceback or stopper.outcome.error,
            ).model_dump_json()
        flat = [self._flat_result(w, c.task_uuid) for w, c in zip(work, confs, strict=True)]
        if len(flat) == 1:
            uuid, success, pathway = flat[0]
            return TaskCompletionResult(
                task_uuid=uuid, stage_uuid=self._stage.uuid, success=success, pathway=pathway
            ).model_dump_json()
        return TaskCompletionResult(
            task_uuid=[uuid for uuid, _, _ in flat],
            stage_uuid=self._stage.uuid,
            success=[uuid for uuid, success, _ in flat if success],
            pathway=[pathway for _, _, pathway in flat if pathway is not None],
        ).model_dump_json()

    @staticmethod
    def _flat_result(work: WorkItem, task_uuid: UUID) -> tuple[UUID, bool, UUID | None]:
        outcome = work.outcome
        assert outcome is not None
        if outcome.status == "succeeded":
            pathway = UUID(outcome.pathway_uuid) if outcome.pathway_uuid else None
            return task_uuid, True, pathway
        # Skipped after the agent ran: the task left the stage meanwhile. encord-agents counts that
        # as a success whose pathway it did not choose; skipped before running is not a success.
        return task_uuid, outcome.status == "skipped" and work.attempts > 0, None


class QueueRunner(RunnerBase):
    """Holds stage functions to be run from task specs distributed through a queue.

    Example::

        runner = QueueRunner(project_hash="<project_hash>")

        @runner.stage("Agent 1")
        def my_agent(lr: LabelRowV2) -> str:
            return "complete"

        for stage in runner.get_agent_stages():
            for task in stage.get_tasks():
                queue.put(task.model_dump_json())
        # elsewhere, per message:
        result = TaskCompletionResult.model_validate_json(my_agent(queue.get()))
    """

    def __init__(
        self,
        project_hash: str | UUID,
        *,
        user_client: EncordUserClient | None = None,
        client: EncordUserClient | None = None,
    ) -> None:
        """``project_hash`` is required: stages are resolved against the project up front.

        ``user_client`` (or ``client``): the Encord client to use instead of one built from the
        environment.
        """
        if not project_hash:
            raise ConfigurationError(
                'QueueRunner needs a project: QueueRunner(project_hash="<project_hash>").'
            )
        super().__init__(project_hash, user_client=user_client, client=client)
        assert self.project is not None
        self._project: Project = self.project

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "A QueueRunner is not called: call the functions that @runner.stage(...) returns with "
            "task specs (task.model_dump_json()), or hand batches to runner.run_batch(...)."
        )

    def stage(
        self,
        stage: str | UUID,
        *,
        label_row_metadata_include_args: LabelRowMetadataIncludeArgs | None = None,
        label_row_initialise_labels_args: LabelRowInitialiseLabelsArgs | None = None,
        will_set_priority: bool = False,
        overwrite: bool = True,
    ) -> Callable[[Callable[..., Any]], StageWrapper]:
        """Register the decorated function for agent stage ``stage`` (name or UUID).

        The function's parameters are injected as with ``Runner.stage``. The decorator returns a
        ``StageWrapper`` that takes ``AgentTask.model_dump_json()`` (or a list of them), runs the
        function and applies its result, and returns ``TaskCompletionResult`` JSON.
        ``will_set_priority=True`` loads the label row for functions that return a
        ``TaskAgentReturnStruct`` with ``label_row_priority`` but take no ``LabelRowV2``.
        Decorating a second function for the same stage is allowed, as in encord-agents: each
        wrapper keeps its own function, and ``run_batch`` uses the last one (``overwrite=False``
        refuses it instead).
        """

        def decorator(func: Callable[..., Any]) -> StageWrapper:
            localns = caller_locals()
            agent = self._register(
                stage,
                func,
                label_row_metadata_include_args=label_row_metadata_include_args,
                label_row_initialise_labels_args=label_row_initialise_labels_args,
                will_set_priority=will_set_priority,
                overwrite=overwrite,
                localns=localns,
            )
            return StageWrapper(self, agent, self._stage_for(agent, self._project))

        return decorator

    def get_agent_stages(self) -> Iterable[AgentStage]:
        """The agent stages that have a registered function, in registration order."""
        for agent in self.agents:
            yield self._stage_for(agent, self._project)

    def stage_configs(self) -> list[StageConfig]:
        """Per registered stage, in definition order: what the producer needs to enqueue it."""
        return [self._stage_config(a, self._stage_for(a, self._project)) for a in self.agents]

    def run_batch(
        self,
        stage: str | UUID,
        items: Sequence[BatchItem],
        *,
        should_continue: Callable[[], bool] | None = None,
        deadline: float | None = None,
        commit_deadline: float | None = None,
    ) -> list[TaskOutcome]:
        """Run the function of ``stage`` on a batch of tasks; one outcome per item, same order.

        Encord I/O is done once per batch (see ``agent_core.runner_base``). Items whose
        ``verify_in_stage`` is set are checked to still be in the stage first (one request);
        those that are not are ``skipped``. ``should_continue`` is asked before each task; once it
        returns False the remaining tasks are ``deferred``. ``deadline``/``commit_deadline``
        (``time.monotonic()``) bound the Encord I/O and each task (see ``execute_batch``). Never raises for a per-task problem;
        raises StageNotFoundError if no function is registered for ``stage``.
        """
        agent = self._agent_for(stage)
        stage_obj = self._stage_for(agent, self._project)
        work = [self._work_item(item, stage_obj) for item in items]
        execute_batch(
            work,
            agent,
            self._project,
            stage_obj,
            self.client,
            num_retries=0,
            should_continue=should_continue,
            deadline=deadline,
            commit_deadline=commit_deadline,
        )
        outcomes: list[TaskOutcome] = []
        for entry in work:
            assert entry.outcome is not None
            outcomes.append(entry.outcome)
        return outcomes

    @staticmethod
    def _work_item(item: BatchItem, stage: AgentStage) -> WorkItem:
        from pydantic import ValidationError

        from agent_core.encord_io import bind_task

        task_uuid = str(item.task.get("uuid") or "")
        work = WorkItem(
            item_id=item.item_id,
            task_uuid=task_uuid,
            label_row_metadata=item.label_row_metadata,
            verify_in_stage=item.verify_in_stage,
        )
        try:
            work.task = bind_task(item.task, stage)
            work.task_uuid = str(work.task.uuid)
        except (ValidationError, ValueError, TypeError) as exc:
            work.finish(
                "failed",
                error=f"The task spec is not an AgentTask spec: {exc}",
                error_type="InvalidTaskSpec",
                retryable=False,
            )
        return work
