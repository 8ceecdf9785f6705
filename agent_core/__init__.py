"""agentkit's library: Encord task-agent runners, dependency injection and the queue pipeline.

The public names mirror ``encord_agents.tasks`` so that agent code ports by changing imports.
Imports are lazy so that ``import agent_core`` stays cheap in a Lambda cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_core.lazy import lazy_exports
from agent_core.vendored import ensure_vendored

# The vision build ships numpy and OpenCV zipped in the dependencies layer: make them importable
# (unpacked once per execution environment) before any agent module that imports the kit can
# import them. Both handlers and every agent module import agent_core first. A no-op without it.
ensure_vendored()

__all__ = [
    "Depends",
    "Frame",
    "FrameData",
    "QueueRunner",
    "Runner",
    "SequentialRunner",
    "TaskAgentReturnStruct",
    "TaskCompletionResult",
]

if TYPE_CHECKING:
    from agent_core.dependencies.depends import Depends
    from agent_core.models import Frame, FrameData, TaskAgentReturnStruct, TaskCompletionResult
    from agent_core.queue_runner import QueueRunner
    from agent_core.runner import Runner, SequentialRunner

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Depends": "agent_core.dependencies.depends",
        "Frame": "agent_core.models",
        "FrameData": "agent_core.models",
        "TaskAgentReturnStruct": "agent_core.models",
        "TaskCompletionResult": "agent_core.models",
        "QueueRunner": "agent_core.queue_runner",
        "Runner": "agent_core.runner",
        "SequentialRunner": "agent_core.runner",
    },
)
