"""The emulator's state: every platform object of one emulator and the operations on them.

``EmulatorState`` holds the model objects (``model.py``) and gives them the behaviour of the
platform (proceeding a task moves it along its pathway, a bundle of actions is atomic, label rows
are created and saved ...). It owns the one re-entrant lock: every method takes it, so the state
is safe to use from the server's threads and from tests at the same time, and every method returns
copies, never live objects. The HTTP modules (``rest.py``, ``rpc.py``, ``control.py``) only parse
requests, call these methods and render what they return.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from infra.emulator.errors import bad_request, forbidden, not_found
from infra.emulator.media import MediaSpec
from infra.emulator.model import (
    DEFAULT_BRANCH,
    DEFAULT_PRIORITY,
    Dataset,
    DataUnit,
    LabelRow,
    LabelRowFilter,
    LabelRowView,
    Ontology,
    Pathway,
    Project,
    Stage,
    StorageFolder,
    StorageItem,
    Task,
    TaskEvent,
    TaskFilter,
    Workflow,
    annotation_task_status,
    initial_status,
    like_to_regex,
    utcnow,
)
from infra.emulator.workflow import (
    accepted_actions,
    decode_page_token,
    encode_page_token,
    listing_order,
    next_stage,
    pathway_for,
    stage_of,
)


# ---------------------------------------------------------------------------------------------
# The state
# ---------------------------------------------------------------------------------------------
class EmulatorState:
    """All platform state of one emulator. See README.md for the query methods tests use."""

    def __init__(self, seed: int = 0, *, task_page_size: int = 100) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.task_page_size = task_page_size
        self.projects: dict[str, Project] = {}
        self.ontologies: dict[str, Ontology] = {}
        self.datasets: dict[str, Dataset] = {}
        self.data_units: dict[str, DataUnit] = {}
        self.folders: dict[str, StorageFolder] = {}
        self.items: dict[str, StorageItem] = {}
        self.tasks: dict[str, Task] = {}
        # label_hash -> (project, data_hash, branch)
        self.label_index: dict[str, tuple[str, str, str]] = {}
        self.item_projects: dict[str, set[str]] = {}  # storage item -> projects that use it
        self._seq = 0

    # -- ids -----------------------------------------------------------------------------
    def new_uuid(self) -> str:
        with self.lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def new_seed(self) -> int:
        with self.lock:
            return self._rng.getrandbits(31)

    # -- building (used by fixtures.py); each returns a copy of what it added -----------------
    def add_ontology(
        self, title: str, structure: dict[str, Any], description: str = ""
    ) -> Ontology:
        now = utcnow()
        ontology = Ontology(self.new_uuid(), title, description, structure, now, now)
        with self.lock:
            self.ontologies[ontology.ontology_hash] = ontology
        return copy.deepcopy(ontology)

    def add_dataset(self, title: str, description: str = "") -> Dataset:
        with self.lock:
            folder = StorageFolder(self.new_uuid(), f"{title} folder")
            self.folders[folder.uuid] = folder
            dataset = Dataset(self.new_uuid(), title, description, folder.uuid)
            self.datasets[dataset.dataset_hash] = dataset
            return copy.deepcopy(dataset)

    def add_data(
        self,
        dataset_hash: str,
        title: str,
        media: MediaSpec,
        client_metadata: dict[str, Any] | None = None,
    ) -> DataUnit:
        with self.lock:
            dataset = self.datasets[dataset_hash]
            now = utcnow()
            item = StorageItem(
                uuid=self.new_uuid(),
                folder_uuid=dataset.folder_uuid,
                name=title,
                media=media,
                client_metadata=dict(client_metadata or {}),
                created_at=now,
                last_edited_at=now,
            )
            if media.kind == "image_group":
                stem = title.rsplit(".", 1)[0]
                for index in range(media.frames):
                    child = StorageItem(
                        uuid=self.new_uuid(),
                        folder_uuid=dataset.folder_uuid,
                        name=f"{stem}_{index:03d}.jpg",
                        media=MediaSpec(
                            "image", media.width, media.height, self.new_seed(), "image/jpeg"
                        ),
                        client_metadata={},
                        created_at=now,
                        last_edited_at=now,
                    )
                    self.items[child.uuid] = child
                    item.children.append(child.uuid)
            self.items[item.uuid] = item
            unit = DataUnit(self.new_uuid(), title, dataset_hash, item.uuid)
            self.data_units[unit.data_hash] = unit
            dataset.data_hashes.append(unit.data_hash)
            return dataclasses.replace(unit)

    def add_project(
        self,
        *,
        title: str,
        ontology_hash: str,
        workflow: Workflow,
        dataset_hashes: Sequence[str],
        description: str = "",
        twin_of: str | None = None,
    ) -> Project:
        with self.lock:
            data_hashes = [h for d in dataset_hashes for h in self.datasets[d].data_hashes]
            now = utcnow()
            project = Project(
                project_hash=self.new_uuid(),
                title=title,
                description=description,
                ontology_hash=ontology_hash,
                workflow=workflow,
                dataset_hashes=list(dataset_hashes),
                data_hashes=data_hashes,
                created_at=now,
                last_edited_at=now,
                twin_of=twin_of,
            )
            self.projects[project.project_hash] = project
            for data_hash in data_hashes:
                item_uuid = self.data_units[data_hash].item_uuid
                for uuid_ in (item_uuid, *self.items[item_uuid].children):
                    self.item_projects.setdefault(uuid_, set()).add(project.project_hash)
            return copy.deepcopy(project)

    def add_task(
        self,
        project_hash: str,
        data_hash: str,
        stage_key: str,
        *,
        priority: float = DEFAULT_PRIORITY,
        status: str | None = None,
        assignee: str | None = None,
    ) -> Task:
        with self.lock:
            project = self.projects[project_hash]
            stage = stage_of(project, stage_key)
            if data_hash in project.tasks_by_data:
                raise ValueError(f"data {data_hash} already has a task in project {project_hash}")
            now = utcnow()
            self._seq += 1
            task = Task(
                uuid=self.new_uuid(),
                project_hash=project_hash,
                data_hash=data_hash,
                stage_uuid=stage.uuid,
                status=status or initial_status(stage),
                created_at=now,
                updated_at=now,
                seq=self._seq,
                priority=priority,
                assignee=assignee,
            )
            task.history.append(
                TaskEvent("CREATED", now, to_stage_uuid=stage.uuid, to_stage_title=stage.title)
            )
            project.tasks_by_data[data_hash] = task
            self.tasks[task.uuid] = task
            return self._copy_task(task)

    def add_label_row(
        self,
        project_hash: str,
        data_hash: str,
        *,
        object_answers: dict[str, Any] | None = None,
        classification_answers: dict[str, Any] | None = None,
        unit_labels: dict[str, Any] | None = None,
        label_status: str = "LABELLED",
        branch_name: str = DEFAULT_BRANCH,
    ) -> LabelRow:
        with self.lock:
            project = self.projects[project_hash]
            now = utcnow()
            row = LabelRow(
                label_hash=self.new_uuid(),
                data_hash=data_hash,
                branch_name=branch_name,
                created_at=now,
                last_edited_at=now,
                label_status=label_status,
                object_answers=dict(object_answers or {}),
                classification_answers=dict(classification_answers or {}),
                unit_labels=dict(unit_labels or {}),
            )
            project.rows_of(branch_name)[data_hash] = row
            self.label_index[row.label_hash] = (project_hash, data_hash, branch_name)
            return copy.deepcopy(row)

    # -- live lookups (callers hold the lock) that raise the API's errors ------------------------
    def _project(self, project_hash: str) -> Project:
        project = self.projects.get(str(project_hash).lower())
        if project is None:
            raise forbidden(f"Project {project_hash} does not exist or you have no access to it.")
        return project

    def _item(
        self, item_uuid: str, visible_to: set[str] | None = None, folder_uuid: str | None = None
    ) -> StorageItem:
        """The item, if it exists and one of ``visible_to`` (None: any project) uses it; 404 if it
        is not in ``folder_uuid`` (when given)."""
        key = str(item_uuid).lower()
        item = self.items.get(key)
        if item is None or (
            visible_to is not None and not (self.item_projects.get(key, set()) & visible_to)
        ):
            raise forbidden(f"Storage item {item_uuid} does not exist or you have no access to it.")
        if folder_uuid is not None and item.folder_uuid != folder_uuid:
            raise not_found(f"Item {key} is not in folder {folder_uuid}.")
        return item

    # ========================================================================================
    # Queries for tests and other helpers (documented in README.md). All return copies.
    # ========================================================================================
    def has_project(self, project_hash: str) -> bool:
        with self.lock:
            return str(project_hash).lower() in self.projects

    def project_hashes(self) -> list[str]:
        with self.lock:
            return list(self.projects)

    def project(self, project_hash: str) -> Project:
        """A deep copy of the project, its tasks and label rows included (403 if there is none)."""
        with self.lock:
            return copy.deepcopy(self._project(project_hash))

    def project_outline(self, project_hash: str) -> tuple[Project, Ontology]:
        """The project without its tasks and label rows (cheap to copy), and its ontology."""
        with self.lock:
            project = self._project(project_hash)
            outline = dataclasses.replace(
                project,
                workflow=copy.deepcopy(project.workflow),
                dataset_hashes=list(project.dataset_hashes),
                data_hashes=list(project.data_hashes),
                tasks_by_data={},
                label_rows={},
                branch_label_rows={},
            )
            return outline, copy.deepcopy(self.ontologies[project.ontology_hash])

    def project_datasets(self, project_hash: str) -> list[Dataset]:
        with self.lock:
            project = self._project(project_hash)
            return [copy.deepcopy(self.datasets[h]) for h in project.dataset_hashes]

    def ontology(self, ontology_hash: str) -> tuple[Ontology | None, set[str]]:
        """The ontology (None if there is none) and the projects that use it."""
        with self.lock:
            ontology = self.ontologies.get(ontology_hash)
            users = {
                p.project_hash for p in self.projects.values() if p.ontology_hash == ontology_hash
            }
            return copy.deepcopy(ontology), users

    def storage_item(
        self, item_uuid: str, visible_to: set[str] | None = None, folder_uuid: str | None = None
    ) -> StorageItem:
        """A copy of a storage item; 403 unless it exists and a project of ``visible_to`` uses it
        (None: any project), 404 if it is not in ``folder_uuid`` (when given)."""
        with self.lock:
            return copy.deepcopy(self._item(item_uuid, visible_to, folder_uuid))

    def child_items(
        self, item_uuid: str, visible_to: set[str] | None = None, folder_uuid: str | None = None
    ) -> list[StorageItem]:
        """Copies of an image group's images in order (checked as ``storage_item`` does)."""
        with self.lock:
            item = self._item(item_uuid, visible_to, folder_uuid)
            return [copy.deepcopy(self.items[c]) for c in item.children]

    def storage_items(
        self, item_uuids: Sequence[str], visible_to: set[str] | None = None
    ) -> list[StorageItem]:
        """Copies of several items, in order; all are checked as ``storage_item`` does."""
        with self.lock:
            return [copy.deepcopy(self._item(u, visible_to)) for u in item_uuids]

    def item_uuids(self) -> set[str]:
        """Every storage item, image-group images included."""
        with self.lock:
            return set(self.items)

    def media_item_uuids(self, data_hashes: Sequence[str] | None = None) -> list[str]:
        """The items that have a file of their own (not image groups, but their images), of
        ``data_hashes`` (None: all)."""
        with self.lock:
            if data_hashes is None:
                uuids = list(self.items)
            else:
                uuids = [self.data_units[h].item_uuid for h in data_hashes]
                uuids += [c for u in uuids for c in self.items[u].children]
            return [u for u in uuids if self.items[u].media.kind != "image_group"]

    def stage_uuid(self, project_hash: str, stage: str) -> str:
        """UUID of a stage given its title or UUID."""
        with self.lock:
            return stage_of(self._project(project_hash), stage).uuid

    def tasks_in_stage(self, project_hash: str, stage: str) -> list[Task]:
        """Tasks currently in a stage (by title or UUID), in listing order."""
        with self.lock:
            project = self._project(project_hash)
            stage_uuid = stage_of(project, stage).uuid
            tasks = [t for t in project.tasks_by_data.values() if t.stage_uuid == stage_uuid]
            return [self._copy_task(t) for t in sorted(tasks, key=listing_order)]

    def stage_counts(self, project_hash: str) -> dict[str, int]:
        """Number of tasks per stage title (every stage listed, zeros included)."""
        with self.lock:
            project = self._project(project_hash)
            counts = {s.title: 0 for s in project.workflow.stages}
            by_uuid = {s.uuid: s.title for s in project.workflow.stages}
            for task in project.tasks_by_data.values():
                counts[by_uuid[task.stage_uuid]] += 1
            return counts

    def task(self, task_uuid: str) -> Task:
        """A copy of the task (with its history)."""
        with self.lock:
            return self._copy_task(self._task(task_uuid))

    def task_for_data(self, project_hash: str, data_hash: str) -> Task:
        with self.lock:
            task = self._project(project_hash).tasks_by_data.get(data_hash)
            if task is None:
                raise KeyError(f"no task for data {data_hash} in project {project_hash}")
            return self._copy_task(task)

    def task_stage(self, task_uuid: str) -> Stage:
        """The stage a task is in now."""
        with self.lock:
            task = self._task(task_uuid)
            stage = self.projects[task.project_hash].workflow.stage(task.stage_uuid)
            assert stage is not None
            return copy.deepcopy(stage)

    def task_history(self, task_uuid: str) -> list[TaskEvent]:
        """Every event of a task in order: CREATED, then each proceed/move/submit/..."""
        with self.lock:
            return list(self._task(task_uuid).history)

    def pathway_actions(self, task_uuid: str) -> list[TaskEvent]:
        """Only the PATHWAY_ACTION events (agent proceeds) of a task."""
        return [e for e in self.task_history(task_uuid) if e.action == "PATHWAY_ACTION"]

    def label_row(
        self, project_hash: str, data_hash: str, branch: str = DEFAULT_BRANCH
    ) -> LabelRow | None:
        """A copy of the stored label row of a data unit in ``branch``, or None if none was created."""
        with self.lock:
            row = self._project(project_hash).rows_of(branch).get(data_hash)
            return copy.deepcopy(row) if row is not None else None

    def label_branches(self, project_hash: str) -> list[str]:
        """The label branches of a project that hold at least one row (main first)."""
        with self.lock:
            project = self._project(project_hash)
            others = sorted(b for b, rows in project.branch_label_rows.items() if rows)
            return [DEFAULT_BRANCH, *others]

    def stored_objects(
        self, project_hash: str, data_hash: str, branch: str = DEFAULT_BRANCH
    ) -> list[dict[str, Any]]:
        """All object instances stored on a label row (every frame/image), as saved by the SDK."""
        row = self.label_row(project_hash, data_hash, branch)
        if row is None:
            return []
        labels = row.unit_labels
        if "objects" in labels:
            return list(labels.get("objects") or [])
        return [obj for frame in labels.values() for obj in (frame.get("objects") or [])]

    def priority(self, project_hash: str, data_hash: str) -> float:
        with self.lock:
            return self.task_for_data(project_hash, data_hash).priority

    def client_metadata(self, item_or_data_hash: str) -> dict[str, Any]:
        """Client metadata of a storage item, given its UUID or the data hash it backs."""
        with self.lock:
            key = str(item_or_data_hash).lower()
            unit = self.data_units.get(key)
            item = self._item(unit.item_uuid if unit else key)
            return copy.deepcopy(item.client_metadata)

    def item_for_data(self, data_hash: str) -> StorageItem:
        """The storage item behind a data unit."""
        with self.lock:
            return copy.deepcopy(self.items[self.data_units[data_hash].item_uuid])

    def unit_hashes(self, data_hash: str) -> list[str]:
        """The hashes of a label row's data units: its images for an image group, else itself."""
        with self.lock:
            item = self.items[self.data_units[data_hash].item_uuid]
            return list(item.children) or [data_hash]

    # ========================================================================================
    # Operations behind the API
    # ========================================================================================
    def list_tasks(
        self, project_hash: str, stage_uuid: str, flt: TaskFilter, page_token: str | None
    ) -> tuple[list[tuple[Task, DataUnit]], str | None]:
        """One page of the tasks in a stage (each with its data unit), ordered by priority (highest
        first), then age; and the token of the next page (None on the last)."""
        after = decode_page_token(page_token) if page_token else None
        with self.lock:
            project = self._project(project_hash)
            stage = stage_of(project, stage_uuid)
            matches = []
            for task in project.tasks_by_data.values():
                if task.stage_uuid != stage.uuid or not self._task_matches(task, flt):
                    continue
                if after is not None and listing_order(task) <= after:
                    continue
                matches.append(task)
            matches.sort(key=listing_order)
            page = matches[: self.task_page_size]
            token = None
            if len(matches) > self.task_page_size:
                token = encode_page_token(listing_order(page[-1]))
            return [
                (self._copy_task(t), dataclasses.replace(self.data_units[t.data_hash]))
                for t in page
            ], token

    def _task_matches(self, task: Task, flt: TaskFilter) -> bool:
        unit = self.data_units[task.data_hash]
        if flt.data_hashes is not None and task.data_hash not in flt.data_hashes:
            return False
        if flt.dataset_hashes is not None and unit.dataset_hash not in flt.dataset_hashes:
            return False
        if flt.user_emails is not None and task.assignee not in flt.user_emails:
            return False
        if flt.statuses is not None and task.status not in flt.statuses:
            return False
        return not (
            flt.data_title_contains is not None
            and flt.data_title_contains.lower() not in unit.title.lower()
        )

    def apply_actions(
        self, project_hash: str, stage_uuid: str, actions: Sequence[dict[str, Any]], actor: str
    ) -> None:
        """Apply a bundle of workflow actions atomically: all are validated before any is applied."""
        with self.lock:
            project = self._project(project_hash)
            stage = stage_of(project, stage_uuid)
            plan: list[tuple[Task, str, Stage | None, Pathway | None, dict[str, Any]]] = []
            seen: set[str] = set()
            for index, action in enumerate(actions):
                if not isinstance(action, dict):
                    raise bad_request(f"Action #{index} is not an object.")
                kind = action.get("action")
                task = self._task_in_stage(project, stage, action.get("taskUuid"), index, seen)
                destination: Stage | None = None
                pathway: Pathway | None = None
                if kind == "PATHWAY_ACTION":
                    pathway = pathway_for(stage, action, task)
                    destination = stage_of(project, pathway.destination_uuid)
                elif kind == "SUBMIT":
                    destination = next_stage(project, stage, "ANNOTATION", stage.next_uuid, kind)
                elif kind == "APPROVE":
                    destination = next_stage(project, stage, "REVIEW", stage.approve_uuid, kind)
                elif kind == "REJECT":
                    destination = next_stage(project, stage, "REVIEW", stage.reject_uuid, kind)
                elif kind == "ASSIGN":
                    if not action.get("assignee"):
                        raise bad_request(f"ASSIGN of task {task.uuid} needs an assignee.")
                elif kind == "RELEASE":
                    pass
                else:
                    raise bad_request(
                        f"Unknown action {kind!r} for task {task.uuid}; stage {stage.title!r} "
                        f"({stage.stage_type}) accepts {accepted_actions(stage)}."
                    )
                if kind in ("ASSIGN", "RELEASE") and stage.stage_type == "DONE":
                    raise bad_request(f"Task {task.uuid} is in final stage {stage.title!r}.")
                plan.append((task, kind, destination, pathway, action))

            now = utcnow()
            for task, kind, destination, pathway, action in plan:
                if destination is not None:
                    self._move(task, stage, destination, kind, now, actor, pathway)
                elif kind == "ASSIGN":
                    task.assignee = str(action["assignee"])
                    task.status = "ASSIGNED"
                    task.updated_at = now
                    task.history.append(TaskEvent(kind, now, stage.uuid, stage.title, actor=actor))
                else:  # RELEASE
                    task.assignee = None
                    task.status = "RELEASED"
                    task.updated_at = now
                    task.history.append(TaskEvent(kind, now, stage.uuid, stage.title, actor=actor))

    def _task_in_stage(
        self, project: Project, stage: Stage, task_uuid: Any, index: int, seen: set[str]
    ) -> Task:
        if not isinstance(task_uuid, str):
            raise bad_request(f"Action #{index} has no taskUuid.")
        task = self.tasks.get(task_uuid.lower())
        if task is None or task.project_hash != project.project_hash:
            raise bad_request(f"Task {task_uuid} does not exist in project {project.project_hash}.")
        if task.stage_uuid != stage.uuid:
            where = project.workflow.stage(task.stage_uuid)
            raise bad_request(
                f"Task {task_uuid} is not in stage {stage.title!r} ({stage.uuid}); it is in "
                f"{where.title if where else task.stage_uuid!r}. Fetch the stage's tasks again."
            )
        if task.uuid in seen:
            raise bad_request(f"Task {task_uuid} appears more than once in one request.")
        seen.add(task.uuid)
        return task

    def _move(
        self,
        task: Task,
        source: Stage,
        destination: Stage,
        kind: str,
        now: datetime,
        actor: str | None,
        pathway: Pathway | None = None,
    ) -> None:
        task.stage_uuid = destination.uuid
        task.status = initial_status(destination)
        task.assignee = None
        task.last_actioned_by = actor
        task.updated_at = now
        task.history.append(
            TaskEvent(
                kind,
                now,
                source.uuid,
                source.title,
                destination.uuid,
                destination.title,
                pathway.uuid if pathway else None,
                pathway.name if pathway else None,
                actor,
            )
        )

    def move_tasks(
        self,
        project_hash: str,
        origin_uuid: str,
        destination_uuid: str,
        task_uuids: Sequence[str],
        actor: str,
    ) -> None:
        """Move tasks from one stage to any other stage, atomically."""
        with self.lock:
            project = self._project(project_hash)
            origin = stage_of(project, origin_uuid)
            destination = project.workflow.stage(str(destination_uuid))
            if destination is None:
                raise bad_request(
                    f"Destination stage {destination_uuid} is not a stage of project {project_hash}."
                )
            seen: set[str] = set()
            tasks = [
                self._task_in_stage(project, origin, t, i, seen) for i, t in enumerate(task_uuids)
            ]
            now = utcnow()
            for task in tasks:
                self._move(task, origin, destination, "MOVE", now, actor)

    def set_priorities(self, project_hash: str, priorities: Sequence[Any]) -> None:
        with self.lock:
            project = self._project(project_hash)
            plan: list[tuple[Task, float]] = []
            for entry in priorities:
                if not isinstance(entry, list | tuple) or len(entry) != 2:
                    raise bad_request("Each priority must be [data_hash, priority].")
                data_hash, value = str(entry[0]).lower(), entry[1]
                if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                    raise bad_request(f"Priority {value!r} of {data_hash} must be between 0 and 1.")
                task = project.tasks_by_data.get(data_hash)
                if task is None:
                    raise bad_request(f"Data {data_hash} is not part of project {project_hash}.")
                plan.append((task, float(value)))
            for task, value in plan:
                task.priority = value

    def workflow_jump(
        self, project_hash: str, label_hashes: Sequence[str], action: str, actor: str
    ) -> None:
        """``labelworkflowgraphnode`` complete/reopen: send tasks to the final / first stage."""
        with self.lock:
            project = self._project(project_hash)
            if action == "complete":
                target = next((s for s in project.workflow.stages if s.stage_type == "DONE"), None)
            elif action == "reopen":
                target = project.workflow.stage(project.workflow.first_stage_uuid)
            else:
                raise bad_request(f"Unknown workflow action {action!r}; use complete or reopen.")
            if target is None:
                raise bad_request(f"Project {project_hash} has no stage to {action} to.")
            tasks = []
            for label_hash in label_hashes:
                tasks.append(project.tasks_by_data[self._owner(project, label_hash)[1]])
            now = utcnow()
            for task in tasks:
                source = project.workflow.stage(task.stage_uuid)
                assert source is not None
                self._move(task, source, target, action.upper(), now, actor)

    # -- label rows ---------------------------------------------------------------------------
    def list_label_rows(self, project_hash: str, flt: LabelRowFilter) -> list[LabelRowView]:
        """The project's data units that pass ``flt``, each with its row in ``flt.branch_name``
        (None if it has none there), in project order."""
        with self.lock:
            project = self._project(project_hash)
            title_like = like_to_regex(flt.data_title_like) if flt.data_title_like else None
            stage_like = like_to_regex(flt.stage_title_like) if flt.stage_title_like else None
            views = []
            for data_hash in project.data_hashes:
                if flt.data_hashes is not None and data_hash not in flt.data_hashes:
                    continue
                unit = self.data_units[data_hash]
                task = project.tasks_by_data.get(data_hash)
                if task is None:
                    continue
                row = project.rows_of(flt.branch_name).get(data_hash)
                stage = project.workflow.stage(task.stage_uuid)
                assert stage is not None
                if flt.label_hashes is not None and (
                    row is None or row.label_hash not in flt.label_hashes
                ):
                    continue
                if flt.data_title_eq is not None and unit.title != flt.data_title_eq:
                    continue
                if title_like is not None and not title_like.match(unit.title):
                    continue
                if flt.stage_title_eq is not None and stage.title != flt.stage_title_eq:
                    continue
                if stage_like is not None and not stage_like.match(stage.title):
                    continue
                if (
                    flt.annotation_task_statuses is not None
                    and annotation_task_status(stage) not in flt.annotation_task_statuses
                ):
                    continue
                if flt.edited_before is not None and (
                    row is None or row.last_edited_at >= flt.edited_before
                ):
                    continue
                if flt.edited_after is not None and (
                    row is None or row.last_edited_at <= flt.edited_after
                ):
                    continue
                views.append(self._view(project, data_hash, row))
            return views

    def label_rows(self, project_hash: str, label_hashes: Sequence[str]) -> list[LabelRowView]:
        """The rows with these label hashes (any branch), in order; 404 for one not in the project."""
        with self.lock:
            project = self._project(project_hash)
            views = []
            for label_hash in label_hashes:
                _, data_hash, branch = self._owner(project, label_hash)
                views.append(self._view(project, data_hash, project.rows_of(branch)[data_hash]))
            return views

    def create_label_rows(
        self, project_hash: str, data_hashes: Sequence[str], branch_name: str | None
    ) -> list[LabelRowView]:
        """Create empty label rows in ``branch_name`` (main when None; another branch comes into
        being with its first row); a row that already exists is returned as it is (idempotent)."""
        branch = branch_name or DEFAULT_BRANCH
        with self.lock:
            project = self._project(project_hash)
            for data_hash in data_hashes:
                if str(data_hash).lower() not in project.tasks_by_data:
                    raise not_found(f"Data {data_hash} is not part of project {project_hash}.")
            views = []
            for data_hash in data_hashes:
                key = str(data_hash).lower()
                row = project.rows_of(branch).get(key)
                if row is None:
                    row = self.add_label_row(
                        project_hash, key, label_status="LABEL_IN_PROGRESS", branch_name=branch
                    )
                views.append(self._view(project, key, row))
            return views

    def _view(self, project: Project, data_hash: str, row: LabelRow | None) -> LabelRowView:
        unit = self.data_units[data_hash]
        task = project.tasks_by_data[data_hash]
        item = self.items[unit.item_uuid]
        return LabelRowView(
            unit=dataclasses.replace(unit),
            task=self._copy_task(task),
            row=copy.deepcopy(row),
            stage=copy.deepcopy(stage_of(project, task.stage_uuid)),
            dataset_title=self.datasets[unit.dataset_hash].title,
            item=copy.deepcopy(item),
            images=[copy.deepcopy(self.items[c]) for c in item.children],
        )

    def _owner(self, project: Project, label_hash: str) -> tuple[str, str, str]:
        """(project, data hash, branch) of a label row of ``project``; 404 for any other."""
        owner = self.label_index.get(str(label_hash))
        if owner is None or owner[0] != project.project_hash:
            raise not_found(f"Label row {label_hash} not found in project {project.project_hash}.")
        return owner

    def save_label_rows(
        self, project_hash: str, label_hashes: Sequence[str], labels: Sequence[Any]
    ) -> None:
        """Store what ``LabelRowV2.save`` sends; all rows are checked before any is stored."""
        if len(label_hashes) != len(labels):
            raise bad_request("uid and labels must have the same length.")
        with self.lock:
            project = self._project(project_hash)
            plan: list[tuple[LabelRow, dict[str, Any]]] = []
            for label_hash, body in zip(label_hashes, labels, strict=True):
                owner = self._owner(project, label_hash)
                if not isinstance(body, dict):
                    raise bad_request(f"Labels of {label_hash} must be an object.")
                if body.get("label_hash") not in (None, label_hash):
                    raise bad_request(
                        f"Labels sent for {label_hash} carry label_hash {body.get('label_hash')}."
                    )
                for key in ("object_answers", "classification_answers", "data_units"):
                    if not isinstance(body.get(key), dict):
                        raise bad_request(f"Labels of {label_hash} need a {key} object.")
                row = project.rows_of(owner[2])[owner[1]]
                units = body["data_units"]
                expected = self.unit_hashes(row.data_hash)
                missing = [u for u in expected if u not in units]
                if missing:
                    raise bad_request(f"Labels of {label_hash} have no data unit {missing[0]}.")
                plan.append((row, body))
            now = utcnow()
            for row, body in plan:
                row.object_answers = copy.deepcopy(body["object_answers"])
                row.classification_answers = copy.deepcopy(body["classification_answers"])
                row.object_actions = copy.deepcopy(body.get("object_actions") or {})
                units = body["data_units"]
                if self.items[self.data_units[row.data_hash].item_uuid].children:
                    # An image group: one data unit per image, labels kept per image.
                    row.unit_labels = {
                        h: copy.deepcopy(units[h].get("labels") or {})
                        for h in self.unit_hashes(row.data_hash)
                    }
                else:
                    row.unit_labels = copy.deepcopy(units[row.data_hash].get("labels") or {})
                status = body.get("label_status")
                if isinstance(status, str) and status and status != "NOT_LABELLED":
                    row.label_status = status
                row.last_edited_at = now
                row.save_count += 1

    # -- storage -------------------------------------------------------------------------------
    def update_item(
        self,
        item_uuid: str,
        *,
        visible_to: set[str] | None = None,
        name: str | None = None,
        description: str | None = None,
        client_metadata: dict[str, Any] | None = None,
    ) -> StorageItem:
        """Change an item (checked as ``storage_item`` does); returns a copy of the result."""
        with self.lock:
            item = self._item(item_uuid, visible_to)
            if client_metadata is not None:
                if not isinstance(client_metadata, dict):
                    raise bad_request("clientMetadata must be an object.")
                json.dumps(client_metadata)
                item.client_metadata = copy.deepcopy(client_metadata)
            if name is not None:
                item.name = name
            if description is not None:
                item.description = description
            item.last_edited_at = utcnow()
            return copy.deepcopy(item)

    # -- helpers -------------------------------------------------------------------------------
    def _task(self, task_uuid: str) -> Task:
        task = self.tasks.get(str(task_uuid).lower())
        if task is None:
            raise KeyError(f"no task {task_uuid}")
        return task

    @staticmethod
    def _copy_task(task: Task) -> Task:
        return dataclasses.replace(task, history=list(task.history))

    def projects_summary(self) -> dict[str, Any]:
        """A JSON-able overview used by the control endpoint ``GET /_emulator/projects``."""
        with self.lock:
            return {
                p.project_hash: {
                    "title": p.title,
                    "twin_of": p.twin_of,
                    "stages": {
                        s.title: {
                            "uuid": s.uuid,
                            "type": s.stage_type,
                            "pathways": {pw.name: pw.uuid for pw in s.pathways},
                        }
                        for s in p.workflow.stages
                    },
                    "counts": self.stage_counts(p.project_hash),
                    "data": len(p.data_hashes),
                }
                for p in self.projects.values()
            }
