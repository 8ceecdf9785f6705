"""``Runner``: the sequential task-agent runner, callable from code or as a command line tool.

It empties the queue of each registered agent stage in the order the stages were defined, in
batches of ``task_batch_size`` tasks whose Encord I/O is bundled (see ``agent_core.runner_base``),
retries a failing task up to ``num_retries`` times, carries on after failures, and with
``refresh_every`` polls the project again. ``runner.run()`` exposes the same options on the command
line: ``python my_agent.py --project-hash <hash> --num-retries 1``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import islice
from typing import TYPE_CHECKING
from uuid import UUID

from agent_core.exceptions import AgentkitError, ConfigurationError, StageNotFoundError
from agent_core.models import LabelRowInitialiseLabelsArgs, LabelRowMetadataIncludeArgs
from agent_core.redaction import redact
from agent_core.runner_base import (
    DecoratedCallable,
    RunnerAgent,
    RunnerBase,
    WorkItem,
    caller_locals,
    execute_batch,
    first_fatal,
)

if TYPE_CHECKING:
    from encord.project import Project
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentStage

__all__ = ["MAX_LABEL_ROW_BATCH_SIZE", "Runner", "SequentialRunner"]

log = logging.getLogger("agent_core.runner")

# encord-agents' name for the most label rows saved per request (its tests import it).
MAX_LABEL_ROW_BATCH_SIZE = 100


class Runner(RunnerBase):
    """Runs stage functions on the tasks of a workflow project's agent stages, one at a time.

    Example::

        runner = Runner(project_hash="<project_hash>")

        @runner.stage("Agent 1")
        def my_agent(lr: LabelRowV2) -> str | None:
            return "complete"

        if __name__ == "__main__":
            runner.run()  # or runner(num_retries=1, task_batch_size=50)
    """

    def __init__(
        self,
        project_hash: str | UUID | None = None,
        *,
        pre_execution_callback: Callable[[Runner], None] | None = None,
        user_client: EncordUserClient | None = None,
        client: EncordUserClient | None = None,
    ) -> None:
        """``project_hash`` is optional: with it, stages are validated when decorated.

        ``pre_execution_callback(runner)`` runs once the project is known, before any task is
        fetched, e.g. to check the project's ontology; ``runner.project`` is set by then.
        ``user_client`` (or ``client``): the Encord client to use instead of one built from the
        environment.
        """
        super().__init__(project_hash, user_client=user_client, client=client)
        self.pre_execution_callback = pre_execution_callback
        self.was_called_from_cli = False

    def stage(
        self,
        stage: str | UUID,
        *,
        label_row_metadata_include_args: LabelRowMetadataIncludeArgs | None = None,
        label_row_initialise_labels_args: LabelRowInitialiseLabelsArgs | None = None,
        overwrite: bool = False,
        will_set_priority: bool = False,
    ) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """Register the decorated function for agent stage ``stage`` (its name or UUID).

        Parameters annotated ``AgentTask``, ``LabelRowV2``, ``Project``, ``AgentStage``,
        ``StorageItem`` or ``EncordUserClient`` receive the task's objects; others are declared
        with ``Annotated[T, Depends(f)]`` or ``= Depends(f)``. The function returns a pathway name
        or UUID, None (the task stays), or a ``TaskAgentReturnStruct``.

        ``label_row_metadata_include_args`` are passed to ``list_label_rows_v2`` and
        ``label_row_initialise_labels_args`` to ``initialise_labels``. ``overwrite=True`` replaces
        a function already registered for the stage (keeping its place in the order).
        ``will_set_priority=True`` loads the label row for a function that sets
        ``label_row_priority`` without taking a ``LabelRowV2``. The function is returned unchanged.
        """

        def decorator(func: DecoratedCallable) -> DecoratedCallable:
            localns = caller_locals()
            self._register(
                stage,
                func,
                label_row_metadata_include_args=label_row_metadata_include_args,
                label_row_initialise_labels_args=label_row_initialise_labels_args,
                will_set_priority=will_set_priority,
                overwrite=overwrite,
                localns=localns,
            )
            return func

        # Validate now, not when the decorator is applied, so the error points at this line.
        identity, printable = self._validate_stage(stage)
        self._check_stage_already_defined(identity, printable, overwrite=overwrite)
        return decorator

    def __call__(
        self,
        refresh_every: int | None = None,
        num_retries: int = 3,
        task_batch_size: int = 300,
        project_hash: str | None = None,
        max_tasks_per_stage: int | None = None,
    ) -> None:
        """Run the registered stage functions on the project's tasks.

        ``refresh_every``: fetch tasks again every that many seconds (without it, return once the
        stages' queues are empty). ``num_retries``: how many times to retry a task whose agent
        fails; it is logged and left in its stage after that. ``task_batch_size``: tasks whose
        label rows are loaded and whose updates are bundled at once. ``project_hash``: the project,
        if not given when the runner was created. ``max_tasks_per_stage``: at most this many tasks
        per stage per pass. A pathway the stage does not have raises ``PathwayNotFoundError``
        (a ``PrintableError``) and nothing of that batch is applied, as in encord-agents.
        """
        self._check_options(num_retries, task_batch_size, max_tasks_per_stage, refresh_every)
        project, stages = self._prepare(project_hash)
        while True:
            started = time.monotonic()
            for agent, stage in stages:
                self._run_stage(
                    agent, stage, project, num_retries, task_batch_size, max_tasks_per_stage
                )
            if refresh_every is None:
                return
            pause = started + refresh_every - time.monotonic()
            if pause > 0:
                log.info("Next poll in %.0f s", pause)
                time.sleep(pause)

    def run_stage(
        self,
        stage: str | UUID,
        *,
        project_hash: str | UUID | None = None,
        num_retries: int = 3,
        task_batch_size: int = 300,
        max_tasks: int | None = None,
    ) -> None:
        """Run one registered stage once (no polling): e.g. from a job told that work is waiting.

        Raises StageNotFoundError (a ``PrintableError``) if ``stage`` is not an agent stage of
        the project or has no registered function.
        """
        self._check_options(num_retries, task_batch_size, max_tasks, None)
        project, _ = self._prepare(project_hash, validate_agents=False)
        valid = self._agent_stages(project)
        target = self._match_stage(self._identity_of(stage), valid)
        if target is None:
            raise StageNotFoundError(self._not_found_message(stage, valid))
        agent = next(
            (a for a in self.agents if self._match_stage(a.identity, [target]) is not None),
            None,
        )
        if agent is None:
            raise StageNotFoundError(
                f"No function is registered for stage {target.title!r}. Decorate one with "
                f'@runner.stage("{target.title}").'
            )
        self._run_stage(agent, target, project, num_retries, task_batch_size, max_tasks)

    @staticmethod
    def _identity_of(stage: str | UUID) -> UUID | str:
        try:
            return UUID(str(stage))
        except ValueError:
            return str(stage)

    @staticmethod
    def _check_options(
        num_retries: int,
        task_batch_size: int,
        max_tasks_per_stage: int | None,
        refresh_every: int | None,
    ) -> None:
        if max_tasks_per_stage is not None and max_tasks_per_stage < 1:
            raise ConfigurationError(
                f"max_tasks_per_stage must be >= 1 (or unset for all), got {max_tasks_per_stage}."
            )
        if num_retries < 0:
            raise ConfigurationError(f"num_retries must be >= 0, got {num_retries}.")
        if task_batch_size < 1:
            raise ConfigurationError(f"task_batch_size must be >= 1, got {task_batch_size}.")
        if refresh_every is not None and refresh_every < 0:
            raise ConfigurationError(f"refresh_every must be >= 0 seconds, got {refresh_every}.")

    def _prepare(
        self, project_hash: str | UUID | None, *, validate_agents: bool = True
    ) -> tuple[Project, list[tuple[RunnerAgent, AgentStage]]]:
        """The project and each registered function's stage; runs ``pre_execution_callback``."""
        project = self._project_for_call(project_hash)
        self.project = project
        self.project_hash = project.project_hash
        stages: list[tuple[RunnerAgent, AgentStage]] = []
        if validate_agents:
            stages = [(agent, self._stage_for(agent, project)) for agent in self.agents]
        if self.pre_execution_callback is not None:
            self.pre_execution_callback(self)
        if validate_agents and not self.agents:
            # encord-agents runs nothing and says nothing; a warning costs no ported program.
            log.warning(
                'No stage function is registered; decorate one with @runner.stage("<stage name>").'
            )
        return project, stages

    def _project_for_call(self, project_hash: str | UUID | None) -> Project:
        if project_hash is not None:
            verified = self._verify_project_hash(project_hash)
            if self.project is not None:
                if self.project.project_hash != verified:
                    raise ConfigurationError(
                        f"This runner is bound to project {self.project.project_hash}, so it "
                        f"cannot run {verified}. Create the runner without project_hash to give "
                        "the project on each call."
                    )
                return self.project
            return self._fetch_project(verified)
        if self.project is not None:
            return self.project
        script = sys.argv[0] if sys.argv and sys.argv[0] else "my_agent.py"
        raise ConfigurationError(
            "No project to run on. Give its hash in one of these ways:\n"
            '  runner = Runner(project_hash="<project_hash>")\n'
            '  runner(project_hash="<project_hash>")\n'
            f"  python {script} --project-hash <project_hash>"
        )

    def _run_stage(
        self,
        agent: RunnerAgent,
        stage: AgentStage,
        project: Project,
        num_retries: int,
        task_batch_size: int,
        max_tasks_per_stage: int | None,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from agent_core.encord_io import chunked

        tasks = list(islice(stage.get_tasks(), max_tasks_per_stage))
        counts: Counter[str] = Counter()
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[summary]}"),
        ) as progress:
            bar = progress.add_task(f"{stage.title}", total=len(tasks), summary="")

            def advance(_: WorkItem) -> None:
                progress.advance(bar)

            for batch in chunked(tasks, task_batch_size):
                items = [
                    WorkItem(item_id=str(t.uuid), task_uuid=str(t.uuid), task=t) for t in batch
                ]
                # A wrong pathway stops the run with nothing of its batch applied, as in
                # encord-agents; any other failure is logged and the run goes on.
                execute_batch(
                    items,
                    agent,
                    project,
                    stage,
                    self.client,
                    num_retries=num_retries,
                    on_task_done=advance,
                    stop_on=lambda item: first_fatal([item]) is not None,
                )
                for item in items:
                    assert item.outcome is not None
                    counts[item.outcome.status] += 1
                    if item.outcome.status == "failed":
                        log.error(
                            "Task %s (%s) failed after %d attempt(s): %s",
                            item.task_uuid,
                            stage.title,
                            max(item.attempts, 1),
                            redact(item.outcome.traceback or item.outcome.error or ""),
                        )
                progress.update(bar, summary=_summary(counts))
                fatal = first_fatal(items)
                if fatal is not None:
                    raise fatal
        log.info("Stage %r: %s", stage.title, _summary(counts) or "no tasks")

    def run(self, args: Sequence[str] | None = None) -> None:
        """Run as a command line tool (options as ``__call__``'s); ``--help`` lists them.

        Errors a user can fix are printed without a traceback and exit with status 2. Needs the
        ``cli`` extra (typer); it is imported here so that a module building a ``Runner`` at
        import time still imports where typer is not installed (e.g. in Lambda).
        """
        import typing
        from typing import Annotated

        import typer

        self.was_called_from_cli = True

        def command(
            refresh_every: Annotated[
                int | None,
                typer.Option(
                    help="Fetch tasks from the project again every REFRESH_EVERY seconds. "
                    "Without it, the runner exits once the stages' queues are empty."
                ),
            ] = None,
            num_retries: Annotated[
                int, typer.Option(help="How many times to retry a task whose agent fails.", min=0)
            ] = 3,
            task_batch_size: Annotated[
                int,
                typer.Option(
                    help="Tasks whose label rows are loaded, and updates bundled, at once.", min=1
                ),
            ] = 300,
            project_hash: Annotated[
                str | None,
                typer.Option(help="The project hash, if not given when the runner was created."),
            ] = None,
            max_tasks_per_stage: Annotated[
                int | None,
                typer.Option(
                    help="Process at most this many tasks per stage per pass (default: all)."
                ),
            ] = None,
        ) -> None:
            self(
                refresh_every=refresh_every,
                num_retries=num_retries,
                task_batch_size=task_batch_size,
                project_hash=project_hash,
                max_tasks_per_stage=max_tasks_per_stage,
            )

        # This module uses postponed annotations; typer reads them, so evaluate them here where
        # the lazily imported names are in scope.
        command.__annotations__ = typing.get_type_hints(
            command, localns={"Annotated": Annotated, "typer": typer}, include_extras=True
        )
        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        app.command(
            help="Run the task agents on the project's agent stages.",
            short_help="Run the task agents.",
        )(command)
        try:
            app(args=list(args) if args is not None else None)
        except AgentkitError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            sys.exit(2)


# encord-agents' name for the sequential runner.
SequentialRunner = Runner


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if n)
