"""``encord_agents.core.utils`` (its task-agent names) under agentkit's package name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_core.dependencies.vision import (
    DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE,
    download_asset,
)
from agent_core.encord_io import chunked
from agent_core.settings import get_user_client

if TYPE_CHECKING:
    from encord.storage import StorageItem

__all__ = [
    "DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE",
    "batch_iterator",
    "download_asset",
    "get_frame_count",
    "get_user_client",
]

# encord-agents' name: lists of up to ``batch_size`` consecutive items (the last may be shorter).
batch_iterator = chunked


def get_frame_count(storage_item: StorageItem) -> int:
    """The number of frames of a video storage item (its frame count, or duration x fps)."""
    from agent_core.dependencies.vision import VIDEO, UnsupportedMediaError, _item_type

    if _item_type(storage_item) != VIDEO:
        raise UnsupportedMediaError("get_frame_count only supports video storage items.")
    if storage_item.frame_count is not None:
        return int(storage_item.frame_count)
    if storage_item.duration is not None and storage_item.fps is not None:
        return int(storage_item.duration * storage_item.fps)
    raise UnsupportedMediaError(
        f"Storage item {storage_item.uuid} has neither a frame count nor a duration and fps."
    )
