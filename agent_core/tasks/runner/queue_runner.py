"""``encord_agents.tasks.runner.queue_runner`` under agentkit's package name."""

from agent_core.queue_runner import QueueRunner

__all__ = ["QueueRunner"]
