"""``encord_agents.utils`` (its task-agent parts) under agentkit's package name."""
