"""``encord_agents.core.dependencies.models`` under agentkit's package name.

``Context`` is encord-agents' bag of per-call objects, for code that solves a dependency graph
itself (``agent_core.core.dependencies.utils.solve_dependencies``); the runners use
``agent_core.dependencies.depends.TaskContext``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_core.dependencies.depends import Dependant, Depends

if TYPE_CHECKING:
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.workflow.stages.agent import AgentStage, AgentTask

    from agent_core.models import FrameData

__all__ = ["Context", "Dependant", "Depends"]


@dataclass
class Context:
    """The objects a dependency graph is solved with (encord-agents' field names)."""

    project: Project
    label_row: LabelRowV2 | None
    task: AgentTask | None = None
    frame_data: FrameData | None = None
    agent_stage: AgentStage | None = None
    storage_item: StorageItem | None = None
