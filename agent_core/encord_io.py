"""Bulk Encord I/O: one request per kind of operation for a whole batch of tasks.

Each helper does a fixed number of requests whatever the number of tasks (up to the SDK's bundle
limits): listing label-row metadata, building label rows from metadata listed elsewhere (no request),
initialising label rows, fetching storage items, finding which tasks are still in a stage, and
committing saves, priorities and pathway actions in bundles.

The SDK is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from agent_core.models import LabelRowInitialiseLabelsArgs, LabelRowMetadataIncludeArgs

if TYPE_CHECKING:
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.orm.label_row import LabelRowMetadata
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentStage, AgentTask

__all__ = [
    "bind_task",
    "chunked",
    "commit_actions",
    "commit_priorities",
    "commit_saves",
    "fetch_storage_items",
    "initialise_label_rows",
    "label_row_from_metadata",
    "list_label_row_metadata",
    "metadata_to_dict",
    "tasks_in_stage",
]

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- label rows -----------------------------------------------------------------------------


def list_label_row_metadata(
    project: Project,
    data_hashes: Sequence[str | UUID],
    include_args: LabelRowMetadataIncludeArgs | None = None,
) -> list[LabelRowMetadata]:
    """The label-row metadata of ``data_hashes``, in one request (empty input: no request).

    Same filters as ``Project.list_label_rows_v2`` but returns the metadata itself, which can be
    carried in a queue message (``metadata_to_dict``) and turned into a ``LabelRowV2`` later
    without listing again (``label_row_from_metadata``).
    """
    if not data_hashes:
        return []
    args = (include_args or LabelRowMetadataIncludeArgs()).model_dump()
    return list(
        project._client.list_label_rows(
            data_hashes=[str(h) for h in dict.fromkeys(str(h) for h in data_hashes)],
            include_uninitialised_labels=True,
            include_workflow_graph_node=args["include_workflow_graph_node"],
            include_client_metadata=args["include_client_metadata"],
            include_images_data=args["include_images_data"],
            include_children=args["include_children"],
            include_all_label_branches=args["include_all_label_branches"],
            branch_name=args["branch_name"],
        )
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def metadata_to_dict(metadata: LabelRowMetadata) -> dict[str, Any]:
    """``LabelRowMetadata.to_dict()`` made JSON-safe (UUIDs as strings), for queue messages."""
    result: dict[str, Any] = _json_safe(metadata.to_dict())
    return result


def label_row_from_metadata(
    project: Project, metadata: LabelRowMetadata | Mapping[str, Any]
) -> LabelRowV2:
    """A ``LabelRowV2`` of ``project`` built from metadata listed earlier, without a request.

    ``metadata`` is a ``LabelRowMetadata`` or its ``to_dict()``/``metadata_to_dict()`` form.
    Raises KeyError/ValueError when the dict is not label-row metadata.
    """
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.orm.label_row import LabelRowMetadata

    if not isinstance(metadata, LabelRowMetadata):
        # from_dict expects the JSON forms (e.g. UUID strings), as the API returns them.
        metadata = LabelRowMetadata.from_dict(_json_safe(dict(metadata)))
    return LabelRowV2(metadata, project._client, project._ontology)


def initialise_label_rows(
    project: Project,
    label_rows: Sequence[LabelRowV2],
    init_args: LabelRowInitialiseLabelsArgs | None = None,
) -> None:
    """Initialise the labels of ``label_rows`` in one bundle (rows with no labels yet are created).

    Rows already initialised are left alone unless ``init_args.overwrite`` is set.
    """
    kwargs = (init_args or LabelRowInitialiseLabelsArgs()).model_dump()
    todo = [row for row in label_rows if kwargs["overwrite"] or not row.is_labelling_initialised]
    if not todo:
        return
    with project.create_bundle() as bundle:
        for row in todo:
            row.initialise_labels(bundle=bundle, **kwargs)


def fetch_storage_items(
    client: EncordUserClient, label_rows: Sequence[LabelRowV2], *, sign_url: bool = True
) -> list[StorageItem | None]:
    """The storage item behind each label row (None where a row has none), in one request."""
    uuids = [row.backing_item_uuid for row in label_rows]
    wanted = list(dict.fromkeys(u for u in uuids if u is not None))
    if not wanted:
        return [None] * len(label_rows)
    items = client.get_storage_items(wanted, sign_url=sign_url)
    by_uuid = {item.uuid: item for item in items}
    return [by_uuid.get(u) if u is not None else None for u in uuids]


# --- tasks ----------------------------------------------------------------------------------


# Data hashes per "which of these are in the stage?" request: they travel in the query string,
# which must stay well under the usual 8 KB URL limits whatever the batch size.
STAGE_CHECK_CHUNK = 50


def tasks_in_stage(stage: AgentStage, data_hashes: Sequence[str | UUID]) -> list[AgentTask]:
    """The tasks of ``data_hashes`` currently in ``stage``: one request per 50 data hashes."""
    unique = list(dict.fromkeys(str(h) for h in data_hashes))
    found: list[AgentTask] = []
    for chunk in chunked(unique, STAGE_CHECK_CHUNK):
        found.extend(stage.get_tasks(data_hash=chunk))
    return found


_SPEC_DEFAULTS: dict[str, Any] = {"status": "NEW", "assignee": None, "last_actioned_by": None}


def bind_task(spec: Mapping[str, Any] | str, stage: AgentStage) -> AgentTask:
    """An ``AgentTask`` built from its spec that can act (``proceed``/``move``) in ``stage``.

    ``spec`` is ``AgentTask.model_dump()`` / ``model_dump_json()`` output. Those omit the private
    links to the stage and the workflow client that ``AgentTask.get_tasks`` sets; they are set
    here from ``stage``, so no request is needed to act on the task. Missing bookkeeping fields
    (status, timestamps, assignee) get neutral defaults. Raises pydantic's ValidationError when
    the spec lacks ``uuid``, ``data_hash``, ``data_title`` or ``label_branch_name``.
    """
    import json

    from encord.issues.issue_client import TaskIssues
    from encord.workflow.stages.agent import AgentTask

    raw: dict[str, Any] = dict(json.loads(spec) if isinstance(spec, str) else spec)
    now = _dt.datetime.now(_dt.UTC).isoformat()
    for key, default in (*_SPEC_DEFAULTS.items(), ("created_at", now), ("updated_at", now)):
        camel = key.split("_")[0] + "".join(p.title() for p in key.split("_")[1:])
        if key not in raw and camel not in raw:
            raw[key] = default
    task = AgentTask.model_validate(raw)
    workflow_client = stage._workflow_client
    task._stage_uuid = stage.uuid
    task._workflow_client = workflow_client
    task._task_issues = TaskIssues(
        api_client=workflow_client.api_client,
        project_uuid=workflow_client.project_hash,
        data_uuid=task.data_hash,
    )
    return task


# --- commits --------------------------------------------------------------------------------


def commit_saves(project: Project, label_rows: Sequence[LabelRowV2]) -> None:
    """Save ``label_rows`` in one bundle (one request up to the SDK's bundle limit)."""
    if not label_rows:
        return
    with project.create_bundle() as bundle:
        for row in label_rows:
            row.save(bundle=bundle)


def commit_priorities(project: Project, priorities: Sequence[tuple[LabelRowV2, float]]) -> None:
    """Set task priorities in one bundle."""
    if not priorities:
        return
    with project.create_bundle() as bundle:
        for row, priority in priorities:
            row.set_priority(priority, bundle=bundle)


def commit_actions(project: Project, actions: Sequence[tuple[AgentTask, UUID]]) -> None:
    """Move tasks along pathways (task, pathway UUID) in one bundle: one request per stage.

    All tasks must belong to the same stage; the server rejects the whole request when one of the
    tasks is no longer there.
    """
    if not actions:
        return
    with project.create_bundle() as bundle:
        for task, pathway_uuid in actions:
            task.proceed(pathway_uuid=str(pathway_uuid), bundle=bundle)
