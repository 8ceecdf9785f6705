"""``encord_agents.core.settings`` under agentkit's package name."""

from agent_core.settings import Settings

__all__ = ["Settings"]
