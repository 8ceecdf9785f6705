"""``encord_agents.tasks.dependencies`` under agentkit's package name.

The media dependencies load numpy/cv2 only when they run, as in ``agent_core.dependencies``.
"""

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
    "dep_asset",
    "dep_client",
    "dep_data_lookup",
    "dep_single_frame",
    "dep_storage_item",
    "dep_twin_label_row",
    "dep_video_iterator",
    "dep_video_sampler",
]
