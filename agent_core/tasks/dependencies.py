"""``encord_agents.tasks.dependencies`` under agentkit's package name: the same objects as
``agent_core.dependencies`` (whose media dependencies load numpy/cv2 only when they run)."""

from agent_core.dependencies import *  # noqa: F403
from agent_core.dependencies import __all__ as __all__
