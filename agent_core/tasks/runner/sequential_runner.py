"""``encord_agents.tasks.runner.sequential_runner`` under agentkit's package name."""

from agent_core.runner import MAX_LABEL_ROW_BATCH_SIZE, Runner, SequentialRunner

__all__ = ["MAX_LABEL_ROW_BATCH_SIZE", "Runner", "SequentialRunner"]
