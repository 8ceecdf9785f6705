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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from typing import Self

    import numpy as np
    from encord.objects.ontology_labels_impl import LabelRowV2
    from numpy.typing import NDArray

    _OptionalLabelRow = LabelRowV2 | None
else:
    # Checked in a validator instead, so that defining the model does not import the SDK.
    _OptionalLabelRow = Any

__all__ = [
    "BatchItem",
    "Frame",
    "FrameData",
    "LabelRowInitialiseLabelsArgs",
    "LabelRowMetadataIncludeArgs",
    "StageConfig",
    "TaskAgentReturnStruct",
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


class TaskAgentReturnStruct(BaseModel):
    """What a stage function may return instead of a bare pathway.

    ``label_row`` is saved and ``label_row_priority`` (0..1) set before the task moves on along
    ``pathway`` (None: the task stays in the stage). Setting a priority without returning a label
    row needs the task's label row: take a ``LabelRowV2`` parameter or pass
    ``will_set_priority=True`` to ``@runner.stage``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pathway: str | UUID | None = Field(
        default=None, description="The pathway name or UUID the task follows; None: it stays."
    )
    label_row: _OptionalLabelRow = Field(default=None, description="A label row to save.")
    label_row_priority: float | None = Field(
        default=None, ge=0.0, le=1.0, description="The priority to give the task's label row."
    )

    @field_validator("label_row")
    @classmethod
    def _is_label_row(cls, value: object) -> object:
        if value is None:
            return value
        from encord.objects.ontology_labels_impl import LabelRowV2

        if not isinstance(value, LabelRowV2):
            raise ValueError(f"label_row must be a LabelRowV2, got {type(value).__name__}")
        return value


class TaskCompletionResult(BaseModel):
    """What a ``QueueRunner`` stage wrapper returns (as JSON) for one task spec."""

    task_uuid: UUID = Field(description="The task's UUID.")
    stage_uuid: UUID | None = Field(
        default=None, description="The stage the task was executed in, if it could be found."
    )
    success: bool = Field(description="The agent ran and its result was applied.")
    pathway: str | UUID | None = Field(
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
        output_format: Literal["raw", "url"] = "raw",
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
        output_format: Literal["raw", "url", "openai", "anthropic"] = "raw",
    ) -> str | dict[str, Any]:
        """Encode the frame as an image, base64: raw, a data URL, or an OpenAI/Anthropic part."""
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
