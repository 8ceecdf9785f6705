"""``encord_agents.core.dependencies`` under agentkit's package name."""

from agent_core.dependencies.depends import Depends

__all__ = ["Depends"]
