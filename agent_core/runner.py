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
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from agent_core.exceptions import AgentkitError, ConfigurationError
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

__all__ = ["Runner"]

log = logging.getLogger("agent_core.runner")


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
        client: EncordUserClient | None = None,
    ) -> None:
        """``project_hash`` is optional: with it, stages are validated when decorated.

        ``pre_execution_callback(runner)`` runs once the project is known, before any task is
        fetched, e.g. to check the project's ontology; ``runner.project`` is set by then.
        """
        super().__init__(project_hash, client=client)
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
            typer.Option(help="Process at most this many tasks per stage per pass (default: all)."),
        ] = None,
    ) -> None:
        """Run the registered stage functions on the project's tasks."""
        if num_retries < 0:
            raise ConfigurationError(f"num_retries must be >= 0, got {num_retries}.")
        if task_batch_size < 1:
            raise ConfigurationError(f"task_batch_size must be >= 1, got {task_batch_size}.")
        if max_tasks_per_stage is not None and max_tasks_per_stage < 1:
            raise ConfigurationError(
                f"max_tasks_per_stage must be >= 1 (or unset for all), got {max_tasks_per_stage}."
            )
        if refresh_every is not None and refresh_every < 0:
            raise ConfigurationError(f"refresh_every must be >= 0 seconds, got {refresh_every}.")

        project = self._project_for_call(project_hash)
        self.project = project
        self.project_hash = project.project_hash
        if self.pre_execution_callback is not None:
            self.pre_execution_callback(self)
        if not self.agents:
            raise ConfigurationError(
                'No stage function is registered. Decorate one with @runner.stage("<stage name>").'
            )
        stages = [(agent, self._stage_for(agent, project)) for agent in self.agents]
        by_stage: dict[UUID, RunnerAgent] = {}
        for agent, stage in stages:
            other = by_stage.setdefault(stage.uuid, agent)
            if other is not agent:
                raise ConfigurationError(
                    f"{other.function_name} ({other.printable_name!r}) and {agent.function_name} "
                    f"({agent.printable_name!r}) are both registered for stage {stage.title!r}. "
                    "Keep one, or register the other with overwrite=True."
                )

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

    def _project_for_call(self, project_hash: str | None) -> Project:
        if project_hash is not None:
            verified = self._verify_project_hash(project_hash)
            if self.project is not None and self.project.project_hash == verified:
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
                execute_batch(
                    items,
                    agent,
                    project,
                    stage,
                    self.client,
                    num_retries=num_retries,
                    on_task_done=advance,
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
                    # Every task would hit the same bug; what succeeded so far is committed.
                    raise fatal
        log.info("Stage %r: %s", stage.title, _summary(counts) or "no tasks")

    def run(self, args: Sequence[str] | None = None) -> None:
        """Run as a command line tool (options as ``__call__``'s); ``--help`` lists them.

        Errors a user can fix are printed without a traceback and exit with status 2.
        """
        self.was_called_from_cli = True
        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        app.command(
            help="Run the task agents on the project's agent stages.",
            short_help="Run the task agents.",
        )(self.__call__)
        try:
            app(args=list(args) if args is not None else None)
        except AgentkitError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            sys.exit(2)


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if n)
