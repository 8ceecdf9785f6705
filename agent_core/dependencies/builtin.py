"""Built-in dependencies that need no media libraries.

Annotations name the SDK types as strings (``from __future__ import annotations``); the dependency
analysis resolves them, so importing this module does not import the SDK.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_core.dependencies.depends import DEPRECATION_ATTR
from agent_core.exceptions import DependencyError, PrintableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.orm.dataset import DataRow
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from encord.workflow.common import WorkflowTask
    from encord.workflow.stages.agent import AgentTask

__all__ = [
    "DataLookup",
    "Twin",
    "TwinProjectError",
    "dep_client",
    "dep_data_lookup",
    "dep_storage_item",
    "dep_twin_label_row",
]


def dep_client(client: EncordUserClient | None = None) -> EncordUserClient:
    """The runner's authenticated ``EncordUserClient`` (one per process, not one per task).

    Called directly (``dep_client()``, as encord-agents' examples do), it builds one from the
    environment like ``get_user_client()``.
    """
    if client is not None:
        return client
    from agent_core.settings import get_user_client

    return get_user_client()


def dep_storage_item(storage_item: StorageItem) -> StorageItem:
    """The ``StorageItem`` behind the task's data unit (client metadata, file properties...).

    Runners fetch the storage items of a whole batch in one request, with signed URLs.
    """
    return storage_item


class DataLookup:
    """Look up storage items and data rows of the runner's project (deprecated).

    Kept so that agents written against ``dep_data_lookup`` keep working; new code should use
    ``dep_storage_item``, which is fetched in bulk.
    """

    def __init__(self, client: EncordUserClient, project: Project) -> None:
        self._client = client
        self._project = project
        self._lock = threading.Lock()
        self._rows: dict[str, LabelRowV2] = {}

    def _label_row(self, data_hash: str) -> LabelRowV2:
        key = str(data_hash)
        with self._lock:
            cached = self._rows.get(key)
        if cached is not None:
            return cached
        rows = self._project.list_label_rows_v2(data_hashes=[key])
        if not rows:
            raise DependencyError(
                f"Data hash {key} is not in project {self._project.project_hash}; look up only "
                "data units of the project the runner works on."
            )
        with self._lock:
            self._rows[key] = rows[0]
        return rows[0]

    def get_storage_item(
        self, data_hash: str, dataset_hash: str | None = None, sign_url: bool = False
    ) -> StorageItem:
        """The storage item that backs ``data_hash`` (``dataset_hash`` is accepted, not needed)."""
        row = self._label_row(data_hash)
        if row.backing_item_uuid is None:
            raise DependencyError(f"Data unit {data_hash} has no backing storage item.")
        return self._client.get_storage_item(row.backing_item_uuid, sign_url=sign_url)

    def get_storage_items(
        self, data_hashes: list[str], *, sign_url: bool = False
    ) -> list[StorageItem]:
        """The storage items behind several data hashes, in one request for the items."""
        rows = [self._label_row(h) for h in data_hashes]
        missing = [h for h, r in zip(data_hashes, rows, strict=True) if r.backing_item_uuid is None]
        if missing:
            raise DependencyError(f"Data units without a backing storage item: {missing}")
        uuids = [r.backing_item_uuid for r in rows if r.backing_item_uuid is not None]
        return self._client.get_storage_items(uuids, sign_url=sign_url)

    def get_data_row(self, data_hash: str, dataset_hash: str | None = None) -> DataRow:
        """The dataset's ``DataRow`` for ``data_hash``."""
        row = self._label_row(data_hash)
        dataset = self._client.get_dataset(dataset_hash or row.dataset_hash)
        found = dataset.list_data_rows(data_hashes=[str(data_hash)])
        if not found:
            raise DependencyError(
                f"Data hash {data_hash} is not in dataset {dataset.dataset_hash}."
            )
        return found[0]


_lookups: dict[tuple[int, str], DataLookup] = {}
_lookups_lock = threading.Lock()


def dep_data_lookup(client: EncordUserClient, project: Project) -> DataLookup:
    """A ``DataLookup`` for the runner's project, shared across tasks (deprecated).

    Use ``dep_storage_item`` to get the task's storage item instead.
    """
    key = (id(client), project.project_hash)
    with _lookups_lock:
        lookup = _lookups.get(key)
        if lookup is None:
            lookup = _lookups[key] = DataLookup(client, project)
    return lookup


setattr(
    dep_data_lookup,
    DEPRECATION_ATTR,
    "dep_data_lookup is deprecated: depend on dep_storage_item to get the task's StorageItem "
    "(fetched in bulk for the batch) instead of looking it up per task.",
)


class TwinProjectError(DependencyError, PrintableError):
    """The twin project cannot be opened (a ``PrintableError``, as encord-agents raises)."""


@dataclass(frozen=True)
class Twin:
    """The label row (and optionally the task) of the same data unit in a "twin" project."""

    label_row: LabelRowV2
    task: WorkflowTask | None


def dep_twin_label_row(
    twin_project_hash: str, init_labels: bool = True, include_task: bool = False
) -> Callable[..., Twin | None]:
    """A dependency giving the task's ``Twin`` in project ``twin_project_hash`` (None if absent).

    The twin project is fetched once per process, on first use, and only the one label row of
    the task's data hash is listed per task. ``init_labels`` initialises that row;
    ``include_task`` also finds the twin's workflow task (None if it cannot be found). As in
    encord-agents, the returned function can also be called directly with a label row (or
    anything with a ``data_hash``): ``dep_twin_label_row(hash)(label_row)``.
    """
    state: dict[str, Project] = {}
    lock = threading.Lock()

    def twin_project(client: EncordUserClient) -> Project:
        with lock:
            project = state.get("project")
            if project is None:
                from encord.exceptions import (
                    AuthenticationError,
                    AuthorisationError,
                    ResourceNotFoundError,
                    UnknownException,
                )

                try:
                    project = client.get_project(twin_project_hash)
                except (
                    AuthorisationError,
                    AuthenticationError,
                    ResourceNotFoundError,
                    UnknownException,
                ):
                    raise TwinProjectError(
                        f"Cannot open twin project {twin_project_hash}: it does not exist or this "
                        "key has no access to it. Add the key's user to the project."
                    ) from None
                state["project"] = project
            return project

    def twin_label_row(task: AgentTask, client: EncordUserClient | None = None) -> Twin | None:
        if client is None:
            from agent_core.settings import get_user_client

            client = get_user_client()
        project = twin_project(client)
        rows = project.list_label_rows_v2(data_hashes=[str(task.data_hash)])
        if not rows:
            return None
        row = rows[0]
        if init_labels:
            row.initialise_labels()
        twin_task: WorkflowTask | None = None
        node = row.workflow_graph_node
        if include_task and node is not None:
            try:
                stage = project.workflow.get_stage(uuid=node.uuid)
                twin_task = next(iter(stage.get_tasks(data_hash=str(task.data_hash))), None)
            except Exception:
                # A stage type without tasks (e.g. a final stage) or a non-workflow project.
                twin_task = None
        return Twin(label_row=row, task=twin_task)

    twin_label_row.__name__ = f"dep_twin_label_row({twin_project_hash})"
    twin_label_row.__qualname__ = twin_label_row.__name__
    return twin_label_row
