"""What ``Runner`` and ``QueueRunner`` share: the stage registry, its validation against the
project's workflow, and the engine that runs one batch of tasks of one stage.

The engine does Encord I/O per batch, not per task: the tasks still in the stage (one request),
label-row metadata (one request, or none when the caller carries it), label rows (one initialise
bundle), storage items (one request); then it runs the stage function task by task; then it commits
label saves, priorities, and pathway actions (one bundle each, in that order, so that no task moves
on before its labels are saved). What a stage function does not need is not fetched.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from agent_core.dependencies.depends import (
    Dependant,
    TaskContext,
    get_dependant,
    solve_dependencies,
)
from agent_core.exceptions import (
    ConfigurationError,
    DependencyError,
    InvalidReturnError,
    PathwayNotFoundError,
    StageNotFoundError,
)
from agent_core.models import (
    LabelRowInitialiseLabelsArgs,
    LabelRowMetadataIncludeArgs,
    StageConfig,
    TaskAgentReturnStruct,
    TaskOutcome,
    TaskStatus,
)
from agent_core.redaction import exception_text, redact, traceback_text

if TYPE_CHECKING:
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentPathway, AgentStage, AgentTask

log = logging.getLogger("agent_core.runner")

DecoratedCallable = TypeVar("DecoratedCallable", bound=Callable[..., Any])

# Errors a retry cannot fix: the function's code or declaration has to change. The task fails on
# the first attempt without being retried.
NON_RETRYABLE: tuple[type[BaseException], ...] = (
    PathwayNotFoundError,
    DependencyError,
)
# Retried like any agent error (encord-agents retries them: a flaky agent may return a good value
# next time), but the task's final outcome is not retryable by a queue.
NOT_RETRYABLE_BY_QUEUE: tuple[type[BaseException], ...] = (InvalidReturnError,)


def _try_uuid(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _stage_list(stages: Sequence[AgentStage], indent: str = "  ") -> str:
    return "\n".join(f'{indent}- "{s.title}" (uuid {s.uuid})' for s in stages) or f"{indent}(none)"


def caller_locals(depth: int = 2) -> dict[str, Any]:
    """The locals of the frame ``depth`` levels up: where a stage decorator is being applied."""
    frame = sys._getframe(depth)
    try:
        # Module-level decoration: globals are found through the function itself.
        return {} if frame.f_locals is frame.f_globals else dict(frame.f_locals)
    finally:
        del frame


_COMPATIBLE: dict[tuple[type[BaseException], type[BaseException]], type[Exception]] = {}


def sdk_compatible(ours: type[Exception], sdk: type[BaseException]) -> type[Exception]:
    """``ours`` that is also an instance of the SDK's ``sdk`` error.

    encord-agents lets the SDK's errors (e.g. ``AuthenticationError``) out of ``Runner(...)``;
    ported code may catch them, so ours are subclasses of both: our message, their type.
    """
    key = (ours, sdk)
    made = _COMPATIBLE.get(key)
    if made is None:

        def __str__(self: BaseException) -> str:
            return str(self.args[0]) if self.args else ""

        made = type(ours.__name__, (ours, sdk), {"__str__": __str__, "__module__": ours.__module__})
        _COMPATIBLE[key] = made
    return made


def _function_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__name__", None) or type(func).__name__)


class RunnerAgent:
    """A stage function registered with a runner, with its dependency graph analysed once."""

    def __init__(
        self,
        identity: UUID | str,
        callable: Callable[..., Any],
        printable_name: str | None = None,
        label_row_metadata_include_args: LabelRowMetadataIncludeArgs | None = None,
        label_row_initialise_labels_args: LabelRowInitialiseLabelsArgs | None = None,
        will_set_priority: bool = False,
        localns: Mapping[str, Any] | None = None,
    ) -> None:
        self.identity = identity
        self.printable_name = printable_name or str(identity)
        self.callable = callable
        # Analysed once here; each task only walks the result.
        self.dependant: Dependant = get_dependant(callable, localns=localns)
        self.label_row_metadata_include_args = label_row_metadata_include_args
        self.label_row_initialise_labels_args = label_row_initialise_labels_args
        self.will_set_priority = will_set_priority

    @property
    def include_args(self) -> LabelRowMetadataIncludeArgs:
        return self.label_row_metadata_include_args or LabelRowMetadataIncludeArgs()

    @property
    def init_args(self) -> LabelRowInitialiseLabelsArgs:
        return self.label_row_initialise_labels_args or LabelRowInitialiseLabelsArgs()

    @property
    def needs_label_row(self) -> bool:
        """An initialised LabelRowV2 is needed (by a parameter, or to set a priority)."""
        return self.dependant.needs_label_row or self.will_set_priority

    @property
    def needs_storage_item(self) -> bool:
        return self.dependant.needs_storage_item

    @property
    def needs_label_row_metadata(self) -> bool:
        return self.needs_label_row or self.needs_storage_item

    @property
    def function_name(self) -> str:
        return _function_name(self.callable)

    def __repr__(self) -> str:
        return f'RunnerAgent("{self.printable_name}", {self.function_name})'


class RunnerBase:
    """Holds the registered stages of a project and validates them against its workflow."""

    def __init__(
        self,
        project_hash: str | UUID | None = None,
        *,
        user_client: EncordUserClient | None = None,
        client: EncordUserClient | None = None,
    ) -> None:
        """``project_hash`` lets stages be validated when they are decorated (fail fast).

        ``user_client`` (encord-agents' name; ``client`` is the same) defaults to one built from
        the environment (``ENCORD_SSH_KEY``, ``ENCORD_SSH_KEY_FILE`` or
        ``ENCORD_SSH_KEY_SECRET_ID``; ``ENCORD_DOMAIN``).
        """
        if user_client is not None and client is not None and user_client is not client:
            raise ConfigurationError("Pass the Encord client once: user_client= or client=.")
        self._client = user_client if user_client is not None else client
        self.project_hash: str | None = (
            self._verify_project_hash(project_hash) if project_hash else None
        )
        self.project: Project | None = (
            self._fetch_project(self.project_hash) if self.project_hash else None
        )
        self.valid_stages: list[AgentStage] | None = (
            self._agent_stages(self.project) if self.project is not None else None
        )
        self.agents: list[RunnerAgent] = []

    # --- project ----------------------------------------------------------------------------

    @property
    def client(self) -> EncordUserClient:
        """The Encord client, created on first use."""
        if self._client is None:
            from agent_core.settings import create_user_client

            self._client = create_user_client()
        return self._client

    @staticmethod
    def _verify_project_hash(project_hash: str | UUID) -> str:
        parsed = _try_uuid(project_hash)
        if parsed is None:
            raise ConfigurationError(
                f"Project hash {str(project_hash)!r} is not a UUID. Copy the project's ID from its "
                "Encord URL (https://app.encord.com/projects/view/<project_hash>)."
            )
        return str(parsed)

    def _fetch_project(self, project_hash: str) -> Project:
        from encord.exceptions import (
            AuthenticationError,
            AuthorisationError,
            RequestException,
            ResourceNotFoundError,
            TimeOutError,
        )

        from agent_core.exceptions import CredentialsError
        from agent_core.settings import EncordSettings

        try:
            project = self.client.get_project(project_hash)
        except AuthenticationError:
            raise sdk_compatible(CredentialsError, AuthenticationError)(
                f"Encord did not accept the configured key when opening project {project_hash} "
                "(AuthenticationError): no Encord user has this key. Add its public key to the "
                "Encord account (Settings > Public keys), or configure the private key that is "
                "registered there."
            ) from None
        except (AuthorisationError, ResourceNotFoundError) as exc:
            raise sdk_compatible(ConfigurationError, type(exc))(
                f"Cannot open project {project_hash} ({type(exc).__name__}): check the hash and "
                "that the Encord key's user is a member of the project."
            ) from None
        except (RequestException, TimeOutError) as exc:
            # Transient or a wrong address: the SDK already retried. The queue retries the
            # messages; the text must name the address, which the SDK's own message buries.
            raise ConfigurationError(
                f"Could not reach Encord at {EncordSettings().domain} to open project "
                f"{project_hash} ({type(exc).__name__}, after the SDK's retries). Check "
                "ENCORD_DOMAIN and the network path to it (a Lambda in a VPC needs a NAT "
                "gateway); queued tasks are retried."
            ) from exc
        self._agent_stages(project)  # validates that it is a workflow project with agent stages
        return project

    @staticmethod
    def _agent_stages(project: Project) -> list[AgentStage]:
        from encord.orm.project import ProjectType
        from encord.workflow.stages.agent import AgentStage

        if project.project_type != ProjectType.WORKFLOW:
            raise ConfigurationError(
                f"Project {project.project_hash} is not a workflow project; task agents need a "
                "workflow with agent stages."
            )
        stages = [s for s in project.workflow.stages if isinstance(s, AgentStage)]
        if not stages:
            raise StageNotFoundError(
                f"Project {project.project_hash} has no agent stage in its workflow. Add an agent "
                "stage to the workflow in Encord, then decorate a function with "
                '@runner.stage(stage="<agent stage name>").'
            )
        return stages

    # --- registry ---------------------------------------------------------------------------

    def _not_found_message(
        self, stage: str | UUID, valid: Sequence[AgentStage], func_name: str | None = None
    ) -> str:
        first = valid[0] if valid else None
        fn = func_name or "my_agent"
        example = (
            f'Use the stage\'s exact name or UUID, e.g.:\n  @runner.stage(stage="{first.title}")\n'
            f'  def {fn}(...): ...\nor\n  @runner.stage(stage="{first.uuid}")\n  def {fn}(...): ...'
            if first
            else ""
        )
        return (
            f"Stage {str(stage)!r} is not an agent stage of the project. Its agent stages are:\n"
            f"{_stage_list(valid)}\n{example}"
        )

    def _validate_stage(self, stage: str | UUID) -> tuple[UUID | str, str]:
        """The stage's identity (its UUID when it can be known) and its printable name."""
        printable = str(stage)
        as_uuid = _try_uuid(stage)
        identity: UUID | str = as_uuid if as_uuid is not None else str(stage)
        if self.valid_stages is not None:
            match = self._match_stage(identity, self.valid_stages)
            if match is None:
                raise StageNotFoundError(self._not_found_message(stage, self.valid_stages))
            identity = match.uuid
        return identity, printable

    @staticmethod
    def _match_stage(identity: UUID | str, stages: Sequence[AgentStage]) -> AgentStage | None:
        for candidate in stages:
            if isinstance(identity, UUID) and candidate.uuid == identity:
                return candidate
        for candidate in stages:
            if candidate.title == str(identity):
                return candidate
        return None

    def _check_stage_already_defined(
        self, identity: UUID | str, printable_name: str, *, overwrite: bool = False
    ) -> int | None:
        for index, agent in enumerate(self.agents):
            if agent.identity == identity:
                if not overwrite:
                    raise ConfigurationError(
                        f"Stage {printable_name!r} already has a function ({agent.function_name}). "
                        "Each agent stage takes one function; to replace it (e.g. when re-running "
                        f'a notebook cell) use @runner.stage("{printable_name}", overwrite=True).'
                    )
                return index
        return None

    def _register(
        self,
        stage: str | UUID,
        func: Callable[..., Any],
        *,
        label_row_metadata_include_args: LabelRowMetadataIncludeArgs | None,
        label_row_initialise_labels_args: LabelRowInitialiseLabelsArgs | None,
        will_set_priority: bool,
        overwrite: bool,
        localns: Mapping[str, Any] | None = None,
    ) -> RunnerAgent:
        identity, printable = self._validate_stage(stage)
        position = self._check_stage_already_defined(identity, printable, overwrite=overwrite)
        agent = RunnerAgent(
            identity=identity,
            callable=func,
            printable_name=printable,
            label_row_metadata_include_args=label_row_metadata_include_args,
            label_row_initialise_labels_args=label_row_initialise_labels_args,
            will_set_priority=will_set_priority,
            localns=localns,
        )
        if position is None:
            self.agents.append(agent)
        else:
            self.agents[position] = agent  # keeps the order stages were first defined in
        return agent

    def _stage_for(self, agent: RunnerAgent, project: Project) -> AgentStage:
        """The agent stage of ``project`` that ``agent`` is registered for."""
        valid = self._agent_stages(project)
        match = self._match_stage(agent.identity, valid)
        if match is None:
            raise StageNotFoundError(
                f"Function {agent.function_name} is registered for stage "
                f"{agent.printable_name!r}, which is not an agent stage of project "
                f"{project.project_hash}.\n"
                + self._not_found_message(agent.printable_name, valid, agent.function_name)
            )
        return match

    def _agent_for(self, stage: str | UUID) -> RunnerAgent:
        identity = _try_uuid(stage)
        for agent in self.agents:
            if identity is not None and agent.identity == identity:
                return agent
        for agent in self.agents:
            if agent.printable_name == str(stage) or str(agent.identity) == str(stage):
                return agent
        registered = ", ".join(repr(a.printable_name) for a in self.agents) or "none"
        raise StageNotFoundError(
            f"No function is registered for stage {str(stage)!r} (registered stages: "
            f'{registered}). Decorate one with @runner.stage("{stage}").'
        )

    def _stage_config(self, agent: RunnerAgent, stage: AgentStage) -> StageConfig:
        return StageConfig(
            stage_uuid=stage.uuid,
            title=stage.title,
            pathways={p.name: p.uuid for p in stage.pathways},
            label_row_metadata_include_args=agent.include_args,
            needs_label_row=agent.needs_label_row,
            needs_storage_item=agent.needs_storage_item,
        )


# --- the batch engine ---------------------------------------------------------------------------


@dataclass
class WorkItem:
    """One task moving through ``execute_batch``; ``outcome`` is set once its fate is known."""

    item_id: str
    task_uuid: str
    task: AgentTask | None = None
    label_row_metadata: dict[str, Any] | None = None
    verify_in_stage: bool = False
    label_row: LabelRowV2 | None = None
    storage_item: StorageItem | None = None
    outcome: TaskOutcome | None = None
    # What the stage function asked for, committed after the batch ran.
    pathway: AgentPathway | None = None
    save_row: LabelRowV2 | None = None
    priority: tuple[LabelRowV2, float] | None = None
    duration_ms: float = 0.0
    attempts: int = 0
    error: BaseException | None = field(default=None, repr=False)
    # The last attempt failed while solving the dependencies, before the agent was called.
    dependency_failed: bool = False

    @property
    def pending(self) -> bool:
        return self.outcome is None

    def finish(
        self,
        status: TaskStatus,
        *,
        error: BaseException | str | None = None,
        error_type: str | None = None,
        retryable: bool = True,
        tb: str | None = None,
    ) -> None:
        message: str | None = None
        retry_after: int | None = None
        if isinstance(error, BaseException):
            self.error = error
            # Safe even when the exception's own __str__ raises (it fails this task only).
            message = exception_text(error) or type(error).__name__
            error_type = error_type or type(error).__name__
            retry_after = _retry_after(error)
            if tb is None:
                tb = traceback_text(error)
        else:
            message = error
        pathway = self.pathway if status == "succeeded" else None
        # An outcome is reported, logged and parked in the DLQ: it must not carry the key, even
        # when the agent's own error text quotes it.
        message = redact(message) if message else message
        tb = redact(tb) if tb else tb
        self.outcome = TaskOutcome(
            item_id=self.item_id,
            task_uuid=self.task_uuid,
            status=status,
            pathway_uuid=str(pathway.uuid) if pathway else None,
            pathway_name=pathway.name if pathway else None,
            error=message,
            error_type=error_type,
            traceback=tb,
            retryable=retryable,
            duration_ms=round(self.duration_ms, 3),
            retry_after_seconds=retry_after,
        )


def _retry_after(exc: BaseException) -> int | None:
    """The delay a rate-limited Encord asked for (429 ``Retry-After``), if any."""
    value = getattr(exc, "retry_after", None)
    return value if isinstance(value, int) and value > 0 else None


def _fail_all(items: Sequence[WorkItem], exc: BaseException, during: str) -> None:
    text = exception_text(exc)
    log.warning("Encord error while %s; failing %d task(s): %s", during, len(items), text)
    tb = traceback_text(exc)
    for item in items:
        if item.pending:
            item.pathway = None
            item.finish(
                "failed",
                error=f"Encord error while {during}: {type(exc).__name__}: {text}",
                error_type=type(exc).__name__,
                retryable=True,
                tb=tb,
            )
            if item.outcome is not None:
                item.outcome.retry_after_seconds = _retry_after(exc)


def _resolve_pathway(value: object, stage: AgentStage, agent: RunnerAgent) -> AgentPathway:
    if isinstance(value, str):
        for pathway in stage.pathways:
            if pathway.name == value:
                return pathway
    as_uuid = _try_uuid(value)
    if as_uuid is not None:
        for pathway in stage.pathways:
            if pathway.uuid == as_uuid:
                return pathway
    valid = ", ".join(f'"{p.name}" ({p.uuid})' for p in stage.pathways) or "none"
    shown = str(value) if isinstance(value, UUID) else repr(value)
    # The valid pathways come last: a shortened repr of the error (pytest's keeps its two ends)
    # still shows them.
    raise PathwayNotFoundError(
        f"{agent.function_name} returned {shown}, which is not a pathway of stage "
        f"{stage.title!r}; return one of its pathways' names or UUIDs, or None to leave the task "
        f"in the stage. Its pathways are: {valid}"
    )


def _apply_result(result: object, item: WorkItem, stage: AgentStage, agent: RunnerAgent) -> None:
    """Record what the stage function returned on ``item``; raise for an unusable return value."""
    pathway_value: object
    if isinstance(result, TaskAgentReturnStruct):
        pathway_value = result.pathway
        if result.label_row is not None:
            item.save_row = result.label_row
        # As in encord-agents: a priority of 0 is not applied, and the priority is set on the
        # task's own label row, which must have been loaded for the stage.
        if result.label_row_priority:
            row = item.label_row
            if row is None:
                raise InvalidReturnError(
                    f"{agent.function_name} returned label_row_priority, but the task's label row "
                    "was not loaded. Pass will_set_priority=True to @runner.stage(...), or take a "
                    "LabelRowV2 parameter."
                )
            item.priority = (row, result.label_row_priority)
    elif result is None or isinstance(result, str | UUID):
        pathway_value = result
    else:
        raise InvalidReturnError(
            f"{agent.function_name} returned a {type(result).__name__}; a stage function returns "
            "a pathway name or UUID, None (the task stays in the stage), or a "
            "TaskAgentReturnStruct."
        )
    item.pathway = None if pathway_value is None else _resolve_pathway(pathway_value, stage, agent)


_MISSING = object()


def _call_agent(agent: RunnerAgent, context: TaskContext, item: WorkItem) -> object:
    result: object = _MISSING
    # Generator dependencies see the agent's exception (like FastAPI's) and are closed either way.
    with ExitStack() as stack:
        item.dependency_failed = True
        values = solve_dependencies(agent.dependant, context, stack)
        item.dependency_failed = False
        result = agent.callable(**values)
    if result is _MISSING:
        raise RuntimeError(
            f"{agent.function_name} raised, and a generator dependency suppressed the exception."
        )
    return result


def _run_one(
    item: WorkItem,
    agent: RunnerAgent,
    project: Project,
    stage: AgentStage,
    client: EncordUserClient,
    num_retries: int,
    deadline: float | None = None,
) -> None:
    from agent_core.pipeline.deadline import DeadlineExceeded, bounded_call

    assert item.task is not None
    context = TaskContext(
        task=item.task,
        project=project,
        stage=stage,
        client=client,
        label_row=item.label_row,
        storage_item=item.storage_item,
    )
    started = time.perf_counter()
    try:
        for attempt in range(1, num_retries + 2):
            item.attempts = attempt
            item.pathway = item.save_row = None
            item.priority = None
            try:
                # With a deadline the agent runs on a bounded worker: a hang or any BaseException
                # (CancelledError, SystemExit, a custom one) fails this task alone.
                result = bounded_call(
                    lambda: _call_agent(agent, context, item),
                    deadline=deadline,
                    what=f"{agent.function_name} on task {item.task_uuid}",
                )
                _apply_result(result, item, stage, agent)
                return
            except KeyboardInterrupt:
                raise
            except DeadlineExceeded as exc:
                log.error("Task %s: %s", item.task_uuid, exc)
                item.finish("failed", error=exc, error_type="TaskTimeout", retryable=True)
                return
            except NON_RETRYABLE as exc:
                log.error("Task %s: %s", item.task_uuid, exception_text(exc))
                item.finish("failed", error=exc, retryable=False)
                return
            except BaseException as exc:
                # Whatever the agent raised fails its own task, not the whole batch. The agent's
                # error text is not ours to trust: it may quote the key, or fail to render.
                log.warning(
                    "Task %s: attempt %d/%d of %s failed: %s: %s",
                    item.task_uuid,
                    attempt,
                    num_retries + 1,
                    agent.function_name,
                    type(exc).__name__,
                    exception_text(exc),
                )
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s", traceback_text(exc))
                # A dependency that fails is not retried, as in encord-agents (which solves them
                # once per task, outside its retry loop).
                if attempt > num_retries or item.dependency_failed:
                    queue_retry = not isinstance(exc, NOT_RETRYABLE_BY_QUEUE)
                    item.finish("failed", error=exc, retryable=queue_retry)
                    return
    finally:
        item.duration_ms = (time.perf_counter() - started) * 1000.0
        if item.outcome is not None:
            item.outcome.duration_ms = round(item.duration_ms, 3)


def _verify_in_stage(items: Sequence[WorkItem], stage: AgentStage) -> None:
    to_check = [i for i in items if i.pending and i.verify_in_stage and i.task is not None]
    if not to_check:
        return
    from agent_core.encord_io import tasks_in_stage

    present = {
        str(t.uuid)
        for t in tasks_in_stage(stage, [str(i.task.data_hash) for i in to_check if i.task])
    }
    for item in to_check:
        if item.task_uuid not in present:
            item.finish(
                "skipped",
                error=f"Task {item.task_uuid} is no longer in stage {stage.title!r}; not run.",
                retryable=False,
            )


def _load_label_rows(items: Sequence[WorkItem], agent: RunnerAgent, project: Project) -> None:
    from agent_core.encord_io import label_row_from_metadata, list_label_row_metadata

    pending = [i for i in items if i.pending and i.task is not None]
    to_list: list[WorkItem] = []
    for item in pending:
        if item.label_row is not None:
            continue
        if item.label_row_metadata:
            try:
                item.label_row = label_row_from_metadata(project, item.label_row_metadata)
                continue
            except (KeyError, ValueError, TypeError) as exc:
                log.warning(
                    "Task %s: unusable carried metadata (%r); listing it", item.task_uuid, exc
                )
        to_list.append(item)
    if to_list:
        listed = list_label_row_metadata(
            project, [str(i.task.data_hash) for i in to_list if i.task], agent.include_args
        )
        by_key: dict[tuple[str, str], Any] = {}
        for listed_row in listed:
            by_key.setdefault((str(listed_row.data_hash), str(listed_row.branch_name)), listed_row)
            by_key.setdefault((str(listed_row.data_hash), "*"), listed_row)
        for item in to_list:
            assert item.task is not None
            data_hash = str(item.task.data_hash)
            found = by_key.get((data_hash, item.task.label_branch_name)) or by_key.get(
                (data_hash, "*")
            )
            if found is not None:
                item.label_row = label_row_from_metadata(project, found)
    for item in pending:
        if item.label_row is None:
            item.finish(
                "failed",
                error=DependencyError(
                    f"Project {project.project_hash} has no label row for data hash "
                    f"{item.task.data_hash if item.task else '?'}; the data unit may have been "
                    "removed from the project."
                ),
                retryable=False,
            )


def _load_storage_items(items: Sequence[WorkItem], client: EncordUserClient) -> None:
    from agent_core.encord_io import fetch_storage_items

    pending = [i for i in items if i.pending and i.label_row is not None]
    found = fetch_storage_items(client, [i.label_row for i in pending if i.label_row is not None])
    for item, storage_item in zip(pending, found, strict=True):
        if storage_item is None:
            item.finish(
                "failed",
                error=DependencyError(
                    f"Task {item.task_uuid} has no storage item behind its data unit; "
                    "dep_storage_item and the media dependencies need one."
                ),
                retryable=False,
            )
        else:
            item.storage_item = storage_item


def _commit(items: Sequence[WorkItem], project: Project, stage: AgentStage) -> None:
    from agent_core.encord_io import (
        commit_actions,
        commit_priorities,
        commit_saves,
        tasks_in_stage,
    )

    ran = [i for i in items if i.pending]
    saving = [i for i in ran if i.save_row is not None]
    if saving:
        try:
            commit_saves(project, [i.save_row for i in saving if i.save_row is not None])
        except Exception as exc:
            _fail_all(saving, exc, "saving label rows")
    prioritising = [i for i in ran if i.pending and i.priority is not None]
    if prioritising:
        try:
            commit_priorities(project, [i.priority for i in prioritising if i.priority])
        except Exception as exc:
            _fail_all(prioritising, exc, "setting priorities")
    moving = [i for i in ran if i.pending and i.pathway is not None]
    for round_ in (1, 2):
        if not moving:
            break
        try:
            commit_actions(
                project, [(i.task, i.pathway.uuid) for i in moving if i.task and i.pathway]
            )
            break
        except Exception as exc:
            if round_ == 2:
                _fail_all(moving, exc, "moving tasks along their pathways")
                break
            # Most often some task left the stage meanwhile (a human moved it, another worker
            # finished it): find out which, drop those, and commit the others.
            try:
                present = {
                    str(t.uuid)
                    for t in tasks_in_stage(
                        stage, [str(i.task.data_hash) for i in moving if i.task]
                    )
                }
            except Exception as check_exc:
                _fail_all(moving, check_exc, "checking tasks after a rejected pathway action")
                break
            gone = [i for i in moving if i.task_uuid not in present]
            if not gone:
                _fail_all(moving, exc, "moving tasks along their pathways")
                break
            for item in gone:
                item.pathway = None
                item.finish(
                    "skipped",
                    error=f"Task {item.task_uuid} left stage {stage.title!r} while the agent ran; "
                    "its pathway was not applied.",
                    retryable=False,
                )
            moving = [i for i in moving if i.pending]
    for item in ran:
        if item.pending:
            item.finish("succeeded")


def execute_batch(
    items: Sequence[WorkItem],
    agent: RunnerAgent,
    project: Project,
    stage: AgentStage,
    client: EncordUserClient,
    *,
    num_retries: int = 0,
    should_continue: Callable[[], bool] | None = None,
    on_task_done: Callable[[WorkItem], None] | None = None,
    stop_on: Callable[[WorkItem], bool] | None = None,
    deadline: float | None = None,
    commit_deadline: float | None = None,
) -> None:
    """Run ``agent`` on ``items`` (tasks of ``stage``), setting every item's ``outcome``.

    Never raises for a per-task problem; an Encord error while fetching for the batch fails every
    item that had not finished (retryable). ``stop_on(failed_item)`` returning True stops the
    batch there without committing anything (encord-agents' all-or-nothing batches): the other
    unfinished items end ``deferred``. With a ``deadline`` (``time.monotonic()``) the fetch and
    every task end by it, and the commit by ``commit_deadline``: what overruns fails
    (``TaskTimeout``), and a task is not started unless the slowest task so far would still fit.
    """
    from agent_core.pipeline.deadline import bounded_call

    def fetch() -> None:
        _verify_in_stage(items, stage)
        if agent.needs_label_row_metadata:
            _load_label_rows(items, agent, project)
        if agent.needs_label_row:
            from agent_core.encord_io import initialise_label_rows

            initialise_label_rows(
                project,
                [i.label_row for i in items if i.pending and i.label_row is not None],
                agent.init_args,
            )
        if agent.needs_storage_item:
            _load_storage_items(items, client)

    try:
        bounded_call(fetch, deadline=deadline, what="fetching the batch from Encord")
    except Exception as exc:
        _fail_all(items, exc, "fetching the batch's tasks, label rows and storage items")
        return

    if stop_on is not None and _stop(items, items, stop_on):
        return
    deferring = False
    slowest = 0.0
    for item in items:
        if not item.pending:
            continue
        if not deferring and should_continue is not None and not should_continue():
            deferring = True
        if not deferring and deadline is not None and time.monotonic() + slowest > deadline:
            # Starting it would most likely end in a timeout: hand it back unrun instead.
            deferring = True
        if deferring:
            item.finish("deferred", error="Not started: out of time for this batch.")
            continue
        _run_one(item, agent, project, stage, client, num_retries, deadline)
        slowest = max(slowest, item.duration_ms / 1000.0)
        if on_task_done is not None:
            on_task_done(item)
        if stop_on is not None and _stop([item], items, stop_on):
            return
    try:
        bounded_call(
            lambda: _commit(items, project, stage),
            deadline=commit_deadline,
            what="committing the batch to Encord",
        )
    except Exception as exc:
        # The abandoned commit may still land; a retry then finds those tasks gone (skipped).
        _fail_all([i for i in items if i.pending], exc, "committing the batch")


def _stop(
    candidates: Sequence[WorkItem], items: Sequence[WorkItem], stop_on: Callable[[WorkItem], bool]
) -> bool:
    """Whether a failed candidate stops the batch; if so, the unfinished items end deferred."""
    stopper = next(
        (
            c
            for c in candidates
            if c.outcome is not None and c.outcome.status == "failed" and stop_on(c)
        ),
        None,
    )
    if stopper is None:
        return False
    for item in items:
        if item.pending:
            item.pathway = None
            item.finish(
                "deferred",
                error=f"Not applied: task {stopper.task_uuid} failed and stopped the batch.",
            )
    return True


def first_fatal(items: Sequence[WorkItem]) -> BaseException | None:
    """The first error that stops a sequential run, as in encord-agents: a pathway the stage does
    not have, or a dependency that failed to be solved."""
    for item in items:
        if isinstance(item.error, PathwayNotFoundError) or (
            item.error is not None and item.dependency_failed
        ):
            return item.error
    return None
