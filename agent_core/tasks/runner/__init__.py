"""``encord_agents.tasks.runner`` under agentkit's package name."""

from agent_core.queue_runner import QueueRunner
from agent_core.runner import Runner, SequentialRunner

__all__ = ["QueueRunner", "Runner", "SequentialRunner"]
