"""``encord_agents.tasks.models`` under agentkit's package name."""

from agent_core.models import (
    AgentTaskConfig,
    TaskAgentReturnPathway,
    TaskAgentReturnStruct,
    TaskAgentReturnType,
    TaskCompletionResult,
)
from agent_core.runner_base import DecoratedCallable

__all__ = [
    "AgentTaskConfig",
    "DecoratedCallable",
    "TaskAgentReturnPathway",
    "TaskAgentReturnStruct",
    "TaskAgentReturnType",
    "TaskCompletionResult",
]
