"""``encord_agents.tasks.runner.runner_base`` under agentkit's package name."""

from agent_core.runner_base import RunnerAgent, RunnerBase

__all__ = ["RunnerAgent", "RunnerBase"]
