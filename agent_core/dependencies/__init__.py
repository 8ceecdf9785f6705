"""Dependencies for stage functions (the counterpart of ``encord_agents.tasks.dependencies``).

Names are loaded on first use, so that importing this package pulls in neither the encord SDK nor
numpy/cv2; the media dependencies import those only when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_core.lazy import lazy_exports

if TYPE_CHECKING:
    from agent_core.dependencies.builtin import (
        DataLookup,
        Twin,
        dep_client,
        dep_data_lookup,
        dep_storage_item,
        dep_twin_label_row,
    )
    from agent_core.dependencies.depends import Depends
    from agent_core.dependencies.vision import (
        UnsupportedMediaError,
        dep_asset,
        dep_single_frame,
        dep_video_iterator,
        dep_video_sampler,
    )
    from agent_core.models import Frame

__all__ = [
    "DataLookup",
    "Depends",
    "Frame",
    "Twin",
    "UnsupportedMediaError",
    "dep_asset",
    "dep_client",
    "dep_data_lookup",
    "dep_single_frame",
    "dep_storage_item",
    "dep_twin_label_row",
    "dep_video_iterator",
    "dep_video_sampler",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Depends": "agent_core.dependencies.depends",
        "DataLookup": "agent_core.dependencies.builtin",
        "Twin": "agent_core.dependencies.builtin",
        "dep_client": "agent_core.dependencies.builtin",
        "dep_data_lookup": "agent_core.dependencies.builtin",
        "dep_storage_item": "agent_core.dependencies.builtin",
        "dep_twin_label_row": "agent_core.dependencies.builtin",
        "UnsupportedMediaError": "agent_core.dependencies.vision",
        "dep_asset": "agent_core.dependencies.vision",
        "dep_single_frame": "agent_core.dependencies.vision",
        "dep_video_iterator": "agent_core.dependencies.vision",
        "dep_video_sampler": "agent_core.dependencies.vision",
        "Frame": "agent_core.models",
    },
)
