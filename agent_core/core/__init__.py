"""``encord_agents.core`` (its task-agent parts) under agentkit's package name."""
