"""``encord_agents.core.data_model`` (its task-agent names) under agentkit's package name."""

from agent_core.models import (
    Frame,
    FrameData,
    LabelRowInitialiseLabelsArgs,
    LabelRowMetadataIncludeArgs,
)

__all__ = ["Frame", "FrameData", "LabelRowInitialiseLabelsArgs", "LabelRowMetadataIncludeArgs"]
