"""Built-in dependencies that need no media libraries.

Annotations name the SDK types as strings (``from __future__ import annotations``); the dependency
analysis resolves them, so importing this module does not import the SDK.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

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
    """Look up storage items and data rows (deprecated; use ``dep_storage_item``).

    Kept so that agents written against ``dep_data_lookup`` or ``DataLookup.sharable`` keep
    working. Built by the runner (``dep_data_lookup``) it looks data hashes up in the runner's
    project; built as encord-agents builds it, ``DataLookup(dataset_hashes)``, in those datasets.
    """

    def __init__(
        self,
        dataset_hashes: list[str | UUID] | None = None,
        *,
        client: EncordUserClient | None = None,
        project: Project | None = None,
    ) -> None:
        if client is None:
            from agent_core.settings import get_user_client

            client = get_user_client()
        self._client = client
        self._project = project
        self._dataset_hashes = [str(h) for h in dataset_hashes or []]
        self._lock = threading.Lock()
        self._rows: dict[str, LabelRowV2] = {}
        self._data_rows: dict[str, DataRow] | None = None

    @classmethod
    def sharable(cls, project: Project) -> DataLookup:
        """The lookup of ``project``, shared by every task of the process (encord-agents' name)."""
        with _lookups_lock:
            lookup = _sharable.get(project.project_hash)
        if lookup is None:
            from agent_core.settings import get_user_client

            lookup = DataLookup(client=get_user_client(), project=project)
            with _lookups_lock:
                lookup = _sharable.setdefault(project.project_hash, lookup)
        return lookup

    def _label_row(self, data_hash: str) -> LabelRowV2:
        key = str(data_hash)
        with self._lock:
            cached = self._rows.get(key)
        if cached is not None:
            return cached
        if self._project is None:
            raise DependencyError(
                "This DataLookup has no project; look data up with get_data_row(data_hash)."
            )
        rows = self._project.list_label_rows_v2(data_hashes=[key])
        if not rows:
            raise DependencyError(
                f"Data hash {key} is not in project {self._project.project_hash}; look up only "
                "data units of the project the runner works on."
            )
        with self._lock:
            self._rows[key] = rows[0]
        return rows[0]

    def _dataset_rows(self) -> dict[str, DataRow]:
        with self._lock:
            if self._data_rows is None:
                self._data_rows = {
                    str(row.uid): row
                    for h in self._dataset_hashes
                    for row in self._client.get_dataset(h).data_rows
                }
            return self._data_rows

    def _backing_uuid(self, data_hash: str, dataset_hash: str | UUID | None) -> str:
        if self._project is not None:
            uuid = self._label_row(data_hash).backing_item_uuid
        else:
            uuid = self.get_data_row(data_hash, dataset_hash).backing_item_uuid
        if uuid is None:
            raise DependencyError(f"Data unit {data_hash} has no backing storage item.")
        return str(uuid)

    @property
    def backing_item_uuids(self) -> list[UUID]:
        """The storage items behind every data unit of the project (or datasets)."""
        if self._project is not None:
            rows = self._project.list_label_rows_v2()
            return [UUID(str(r.backing_item_uuid)) for r in rows if r.backing_item_uuid]
        return [UUID(str(r.backing_item_uuid)) for r in self._dataset_rows().values()]

    def get_storage_item(
        self, data_hash: str | UUID, dataset_hash: str | UUID | None = None, sign_url: bool = False
    ) -> StorageItem:
        """The storage item that backs ``data_hash``."""
        uuid = self._backing_uuid(str(data_hash), dataset_hash)
        return self._client.get_storage_item(uuid, sign_url=sign_url)

    def get_storage_items(
        self,
        data_hashes: list[str | UUID],
        dataset_hash: str | UUID | None = None,
        sign_urls: bool = False,
    ) -> list[StorageItem]:
        """The storage items behind several data hashes, in one request for the items."""
        uuids = [self._backing_uuid(str(h), dataset_hash) for h in data_hashes]
        return self._client.get_storage_items(uuids, sign_url=sign_urls)

    def get_data_row(
        self, data_hash: str | UUID, dataset_hash: str | UUID | None = None
    ) -> DataRow:
        """The dataset's ``DataRow`` for ``data_hash``."""
        key = str(data_hash)
        if self._project is None:
            if dataset_hash is not None and str(dataset_hash) not in self._dataset_hashes:
                self._dataset_hashes.append(str(dataset_hash))
                with self._lock:
                    self._data_rows = None
            found_row = self._dataset_rows().get(key)
            if found_row is None:
                raise DependencyError(
                    f"Data hash {key} is in none of the datasets {self._dataset_hashes}; pass "
                    "the dataset_hash it belongs to."
                )
            return found_row
        row = self._label_row(key)
        dataset = self._client.get_dataset(str(dataset_hash or row.dataset_hash))
        found = dataset.list_data_rows(data_hashes=[key])
        if not found:
            raise DependencyError(f"Data hash {key} is not in dataset {dataset.dataset_hash}.")
        return found[0]


_lookups: dict[tuple[int, str], DataLookup] = {}
_lookups_lock = threading.Lock()
# DataLookup.sharable's lookups, one per project (built with a client from the environment).
_sharable: dict[str, DataLookup] = {}


def _shared_lookup(client: EncordUserClient, project: Project) -> DataLookup:
    key = (id(client), project.project_hash)
    with _lookups_lock:
        lookup = _lookups.get(key)
        if lookup is None:
            lookup = _lookups[key] = DataLookup(client=client, project=project)
    return lookup


def dep_data_lookup(client: EncordUserClient, project: Project) -> DataLookup:
    """A ``DataLookup`` for the runner's project, shared across tasks (deprecated).

    Use ``dep_storage_item`` to get the task's storage item instead.
    """
    return _shared_lookup(client, project)


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
