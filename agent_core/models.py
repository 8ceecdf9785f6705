"""Data models shared by the runners, the dependencies and the queue pipeline.

The names mirror ``encord_agents.tasks.models`` and ``encord_agents.core.data_model`` so that
agent code ports by changing imports. The module imports neither the encord SDK nor numpy at
import time: the consumer Lambda imports it on every cold start, and the SDK pulls in numpy.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from typing import Self

    import numpy as np
    from encord.objects.ontology_labels_impl import LabelRowV2
    from numpy.typing import NDArray


# What a stage function returns: a pathway name or UUID, None, or a TaskAgentReturnStruct.
TaskAgentReturnPathway = str | UUID | None

__all__ = [
    "AgentTaskConfig",
    "BatchItem",
    "Frame",
    "FrameData",
    "LabelRowInitialiseLabelsArgs",
    "LabelRowMetadataIncludeArgs",
    "StageConfig",
    "TaskAgentReturnPathway",
    "TaskAgentReturnStruct",
    "TaskAgentReturnType",
    "TaskCompletionResult",
    "TaskOutcome",
]


class LabelRowMetadataIncludeArgs(BaseModel):
    """Keyword arguments passed to ``Project.list_label_rows_v2`` when a stage lists label rows.

    Metadata read this way (e.g. ``client_metadata``) is for reading; to change client metadata
    use the ``dep_storage_item`` dependency and ``StorageItem.update``.
    """

    include_workflow_graph_node: bool = True
    include_client_metadata: bool = False
    include_images_data: bool = False
    include_all_label_branches: bool = False
    branch_name: str | None = None
    include_children: bool = False

    @model_validator(mode="after")
    def _one_branch_selector(self) -> Self:
        if self.branch_name and self.include_all_label_branches:
            raise ValueError(
                "set either branch_name or include_all_label_branches=True, not both: "
                "one asks for a single branch, the other for every branch"
            )
        return self


class LabelRowInitialiseLabelsArgs(BaseModel):
    """Keyword arguments passed to ``LabelRowV2.initialise_labels`` for a stage's label rows."""

    include_object_feature_hashes: set[str] | None = None
    include_classification_feature_hashes: set[str] | None = None
    include_reviews: bool = False
    overwrite: bool = False
    include_signed_url: bool = False


@dataclass
class TaskAgentReturnStruct:
    """What a stage function may return instead of a bare pathway (a dataclass, as in encord-agents).

    ``label_row`` is saved and ``label_row_priority`` set before the task moves on along
    ``pathway`` (None: the task stays in the stage). Setting a priority needs the task's label
    row: take a ``LabelRowV2`` parameter or pass ``will_set_priority=True`` to ``@runner.stage``.
    As in encord-agents, a priority of ``0`` (or ``None``) is not applied.
    """

    pathway: TaskAgentReturnPathway = None
    label_row: LabelRowV2 | None = None
    label_row_priority: float | None = None


TaskAgentReturnType = TaskAgentReturnPathway | TaskAgentReturnStruct


class AgentTaskConfig(BaseModel):
    """The fields of ``AgentTask.model_dump_json()`` a ``QueueRunner`` wrapper reads."""

    task_uuid: UUID = Field(description="The task's UUID.", validation_alias="uuid")
    data_hash: UUID = Field(description="The data unit's hash.")
    data_title: str = Field(description="The data unit's title.")
    label_branch_name: str = Field(description="The label branch of the task.")


class TaskCompletionResult(BaseModel):
    """What a ``QueueRunner`` stage wrapper returns (as JSON), in encord-agents' shape.

    For one task spec, ``task_uuid`` is its UUID, ``success`` a bool and ``pathway`` the UUID of
    the pathway it followed (None if it stayed or failed). For a list of specs, ``task_uuid`` lists
    every task, ``success`` lists the UUIDs of the tasks that succeeded and ``pathway`` the pathway
    UUIDs of those that moved; when the whole call failed, ``success`` is False and ``error`` holds
    the traceback.
    """

    task_uuid: UUID | list[UUID] = Field(description="The task's UUID (or every task's).")
    stage_uuid: UUID | None = Field(
        default=None, description="The stage the task was executed in, if it could be found."
    )
    success: bool | list[UUID] = Field(
        description="The agent ran and its result was applied (or: the tasks for which it was)."
    )
    pathway: UUID | list[UUID] | None = Field(
        default=None,
        description="The pathway the task followed; None if it stayed or the agent failed.",
    )
    error: str | None = Field(default=None, description="Traceback or reason when not a success.")


class FrameData(BaseModel):
    """The payload the Encord label editor sends to an editor agent (kept for import parity)."""

    model_config = ConfigDict(populate_by_name=True)

    project_hash: UUID = Field(alias="projectHash")
    data_hash: UUID = Field(alias="dataHash")
    frame: int = Field(ge=0)
    object_hashes: list[str] | None = Field(default=None, alias="objectHashes")


_MEDIA_TYPES = {".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".png": "image/png"}


@dataclass(frozen=True)
class Frame:
    """One decoded frame of an image or video: its index and an RGB ``[h, w, 3]`` uint8 array."""

    frame: int
    content: NDArray[np.uint8]

    @overload
    def b64_encoding(
        self,
        image_format: Literal[".jpeg", ".jpg", ".png"] = ".jpeg",
        output_format: Literal["raw", "url"] = "url",
    ) -> str: ...

    @overload
    def b64_encoding(
        self,
        image_format: Literal[".jpeg", ".jpg", ".png"] = ".jpeg",
        *,
        output_format: Literal["openai", "anthropic"],
    ) -> dict[str, Any]: ...

    def b64_encoding(
        self,
        image_format: Literal[".jpeg", ".jpg", ".png"] = ".jpeg",
        output_format: Literal["raw", "url", "openai", "anthropic"] = "url",
    ) -> str | dict[str, Any]:
        """Encode the frame as an image in base64: by default a data URL (as encord-agents does);
        ``"raw"`` for the bare base64 text, or an OpenAI/Anthropic message part."""
        import cv2

        ok, buffer = cv2.imencode(image_format, cv2.cvtColor(self.content, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not encode frame {self.frame} as {image_format}")
        raw = base64.b64encode(buffer.tobytes()).decode("ascii")
        if output_format == "raw":
            return raw
        media_type = _MEDIA_TYPES[image_format]
        url = f"data:{media_type};base64,{raw}"
        if output_format == "url":
            return url
        if output_format == "openai":
            return {"type": "image_url", "image_url": {"url": url}}
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": raw},
        }


class StageConfig(BaseModel):
    """What the producer needs to know about one registered stage to enqueue its tasks."""

    model_config = ConfigDict(frozen=True)

    stage_uuid: UUID
    title: str
    pathways: dict[str, UUID]
    label_row_metadata_include_args: LabelRowMetadataIncludeArgs
    # The function (or will_set_priority) needs an initialised LabelRowV2.
    needs_label_row: bool
    # The function needs the StorageItem (found through the label row's backing item).
    needs_storage_item: bool

    @property
    def needs_label_row_metadata(self) -> bool:
        """Whether the consumer will need label-row metadata (worth listing in the producer)."""
        return self.needs_label_row or self.needs_storage_item


class BatchItem(BaseModel):
    """One task handed to ``QueueRunner.run_batch``."""

    item_id: str
    task: dict[str, Any]
    label_row_metadata: dict[str, Any] | None = None
    verify_in_stage: bool = True


TaskStatus = Literal["succeeded", "failed", "skipped", "deferred"]


class TaskOutcome(BaseModel):
    """What happened to one ``BatchItem`` (see ``QueueRunner.run_batch``)."""

    item_id: str
    task_uuid: str
    status: TaskStatus
    pathway_uuid: str | None = None
    pathway_name: str | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    retryable: bool = True
    duration_ms: float = 0.0
    # A rate-limited Encord's ``Retry-After``: retry no sooner than this.
    retry_after_seconds: int | None = None
