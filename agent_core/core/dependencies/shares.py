"""``encord_agents.core.dependencies.shares`` under agentkit's package name."""

from agent_core.dependencies.builtin import DataLookup

__all__ = ["DataLookup"]
