"""The emulator's model objects: projects, workflows, tasks, label rows, datasets, storage items.

Plain dataclasses and the few pure rules that go with them (which status a task gets in a stage,
how a SQL LIKE pattern matches). ``state.EmulatorState`` holds them and owns their lock; nothing
outside ``state.py`` changes them, and what it hands out are copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from infra.emulator.media import MediaSpec

StageType = Literal["AGENT", "ANNOTATION", "REVIEW", "DONE"]
DEFAULT_PRIORITY = 0.5
DEFAULT_BRANCH = "main"
OWNER_EMAIL = "emulator@agentkit.local"


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Model objects
# ---------------------------------------------------------------------------------------------
@dataclass
class Pathway:
    uuid: str
    name: str
    destination_uuid: str


@dataclass
class Stage:
    """A workflow stage. Routing: agent stages by pathway; annotation by ``next_uuid`` (submit);
    review by ``approve_uuid`` / ``reject_uuid``; DONE stages are terminal."""

    uuid: str
    title: str
    stage_type: StageType
    pathways: list[Pathway] = field(default_factory=list)
    next_uuid: str | None = None
    approve_uuid: str | None = None
    reject_uuid: str | None = None

    def find_pathway(self, *, name: str | None = None, uuid_: str | None = None) -> Pathway | None:
        for pathway in self.pathways:
            if uuid_ is not None and pathway.uuid == uuid_.lower():
                return pathway
            if name is not None and uuid_ is None and pathway.name == name:
                return pathway
        return None


@dataclass
class Workflow:
    uuid: str
    start_uuid: str
    first_stage_uuid: str
    stages: list[Stage]

    def stage(self, key: str) -> Stage | None:
        """Stage by UUID or by title."""
        for stage in self.stages:
            if stage.uuid == key.lower() or stage.title == key:
                return stage
        return None


@dataclass
class Ontology:
    ontology_hash: str
    title: str
    description: str
    structure: dict[str, Any]
    created_at: datetime
    last_edited_at: datetime


@dataclass
class StorageFolder:
    uuid: str
    name: str


@dataclass
class StorageItem:
    uuid: str
    folder_uuid: str
    name: str
    media: MediaSpec
    client_metadata: dict[str, Any]
    created_at: datetime
    last_edited_at: datetime
    description: str = ""
    # The images of an image group, in order (storage items of their own, not data units).
    children: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    dataset_hash: str
    title: str
    description: str
    folder_uuid: str
    data_hashes: list[str] = field(default_factory=list)


@dataclass
class DataUnit:
    """A data row of a dataset, backed by one storage item (its ``backing_item_uuid``)."""

    data_hash: str
    title: str
    dataset_hash: str
    item_uuid: str


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's history. ``action`` is one of CREATED, PATHWAY_ACTION, MOVE, SUBMIT,
    APPROVE, REJECT, ASSIGN, RELEASE, COMPLETE, REOPEN."""

    action: str
    at: datetime
    from_stage_uuid: str | None = None
    from_stage_title: str | None = None
    to_stage_uuid: str | None = None
    to_stage_title: str | None = None
    pathway_uuid: str | None = None
    pathway_name: str | None = None
    actor: str | None = None


@dataclass
class Task:
    """A workflow task: one per data unit and project. Its UUID stays the same as it moves."""

    uuid: str
    project_hash: str
    data_hash: str
    stage_uuid: str
    status: str
    created_at: datetime
    updated_at: datetime
    seq: int
    priority: float = DEFAULT_PRIORITY
    assignee: str | None = None
    last_actioned_by: str | None = None
    branch_name: str = DEFAULT_BRANCH
    history: list[TaskEvent] = field(default_factory=list)


@dataclass
class LabelRow:
    label_hash: str
    data_hash: str
    branch_name: str
    created_at: datetime
    last_edited_at: datetime
    label_status: str = "LABEL_IN_PROGRESS"
    object_answers: dict[str, Any] = field(default_factory=dict)
    classification_answers: dict[str, Any] = field(default_factory=dict)
    object_actions: dict[str, Any] = field(default_factory=dict)
    # The ``labels`` of the (single) data unit: {objects, classifications} for an image,
    # {frame: {objects, classifications}} for a video.
    unit_labels: dict[str, Any] = field(default_factory=dict)
    save_count: int = 0


@dataclass
class Project:
    project_hash: str
    title: str
    description: str
    ontology_hash: str
    workflow: Workflow
    dataset_hashes: list[str]
    data_hashes: list[str]
    created_at: datetime
    last_edited_at: datetime
    tasks_by_data: dict[str, Task] = field(default_factory=dict)
    # The label rows of the main branch, by data hash.
    label_rows: dict[str, LabelRow] = field(default_factory=dict)
    # Rows of the other label branches: branch name -> data hash -> row. A branch exists once a
    # row was created in it (``initialise_labels``/``save`` of a row listed with that branch).
    branch_label_rows: dict[str, dict[str, LabelRow]] = field(default_factory=dict)
    twin_of: str | None = None

    def rows_of(self, branch: str | None) -> dict[str, LabelRow]:
        """The rows of ``branch`` (main when None), created empty on first use."""
        if branch in (None, DEFAULT_BRANCH):
            return self.label_rows
        return self.branch_label_rows.setdefault(str(branch), {})


# ---------------------------------------------------------------------------------------------
# Filters passed in by the API layer
# ---------------------------------------------------------------------------------------------
@dataclass
class TaskFilter:
    data_hashes: set[str] | None = None
    dataset_hashes: set[str] | None = None
    user_emails: set[str] | None = None
    statuses: set[str] | None = None
    data_title_contains: str | None = None


@dataclass
class LabelRowFilter:
    data_hashes: set[str] | None = None
    label_hashes: set[str] | None = None
    data_title_eq: str | None = None
    data_title_like: str | None = None
    stage_title_eq: str | None = None
    stage_title_like: str | None = None
    annotation_task_statuses: set[str] | None = None
    edited_before: datetime | None = None
    edited_after: datetime | None = None
    branch_name: str | None = None


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%`` any run, ``_`` one character), case-insensitive as on the platform."""
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def annotation_task_status(stage: Stage) -> str:
    if stage.stage_type == "DONE":
        return "COMPLETED"
    if stage.stage_type == "REVIEW":
        return "IN_REVIEW"
    return "QUEUED"


def initial_status(stage: Stage) -> str:
    return "COMPLETED" if stage.stage_type == "DONE" else "NEW"


def ids(values: Iterable[str] | None) -> set[str] | None:
    """Filter values as the state compares them (lower-case ids); None means no filter."""
    return None if values is None else {str(v).lower() for v in values}


@dataclass
class LabelRowView:
    """One label row and what rendering it needs, copied out of the state together."""

    unit: DataUnit
    task: Task
    row: LabelRow | None  # None: listed, never created in the branch asked for
    stage: Stage  # the stage the task is in
    dataset_title: str
    item: StorageItem
    # An image group's images in order (storage items of their own); empty for other media.
    images: list[StorageItem]
