"""Your agent: the module the stack deploys by default (``AgentModule=agents.starter:runner``).

Edit it to fit your project's workflow: one ``@runner.stage("<agent stage name>")`` function per
agent stage your Lambda functions serve, each returning the name (or UUID) of the pathway the task
takes next, or ``None`` to leave the task where it is. As shipped it serves an agent stage named
``pre-label`` and sends every task on to the pathway ``annotate`` (a human annotates it).

It imports no third-party package, so it runs on the lean build
(``LAYER_REQUIREMENTS=requirements/consumer.txt sam build``) as well as on the default one. Import
what your stage functions need at the top of this module (numpy, cv2, your own packages): both
functions load this module from the same dependencies layer, see docs/PACKAGING.md.
``agents/example.py`` is the demo agent with vision dependencies (and deliberate failures).
"""

from __future__ import annotations

import os

from encord.objects.ontology_labels_impl import LabelRowV2
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner
from agent_core.exceptions import ConfigurationError

# The names in your project's workflow (Encord: Project > Workflow): the agent stage and the
# pathway out of it that the tasks should take.
STAGE = "pre-label"
PATHWAY = "annotate"


def _project_hash() -> str:
    value = os.environ.get("PROJECT_HASH", "").strip()
    if not value:
        raise ConfigurationError(
            "agents.starter needs PROJECT_HASH, the hash of the Encord project (the template "
            "sets it from the ProjectHash parameter)."
        )
    return value


runner = QueueRunner(project_hash=_project_hash())


@runner.stage(STAGE)
def route(task: AgentTask, lr: LabelRowV2) -> str | None:
    """Decide where the task goes next; ``lr`` is its label row, initialised. Your logic here."""
    return PATHWAY
