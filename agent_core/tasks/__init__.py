"""``encord_agents.tasks`` under agentkit's package name: rewrite ``encord_agents`` to ``agent_core``.

Every name is the same object as its home in ``agent_core`` (``agent_core.Runner`` is
``agent_core.tasks.Runner``); the short paths stay the recommended ones.
"""

from agent_core.dependencies.depends import Depends
from agent_core.tasks.runner import QueueRunner, Runner, SequentialRunner

__all__ = ["Depends", "QueueRunner", "Runner", "SequentialRunner"]
