"""Small agents for the pipeline tests, loaded by the handlers through AGENT_MODULE.

Each attribute is a factory (the loader calls it once per process) building a QueueRunner for the
project in PROJECT_HASH, because every test seeds its own project. What the agents do is steered
by ``behaviour``, a module-level object the tests set and ``reset()`` clears.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from encord.objects.ontology_labels_impl import LabelRowV2
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner
from agent_core.models import LabelRowMetadataIncludeArgs

STAGE = "Agent 1"
PATHWAY = "complete"
FAKE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


@dataclass
class Behaviour:
    # Data titles whose task raises; "*" makes every task raise.
    fail_titles: set[str] = field(default_factory=set)
    fail_message: str = "agent failed on purpose"
    sleep_seconds: float = 0.0
    calls: list[str] = field(default_factory=list)  # data titles, in call order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, title: str) -> None:
        with self.lock:
            self.calls.append(title)
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        if "*" in self.fail_titles or title in self.fail_titles:
            raise RuntimeError(f"{self.fail_message} ({title})")


behaviour = Behaviour()


def reset() -> None:
    global behaviour
    behaviour = Behaviour()


def _runner() -> QueueRunner:
    return QueueRunner(project_hash=os.environ["PROJECT_HASH"])


def complete_runner() -> QueueRunner:
    """Takes the label row (so the producer carries its metadata) and completes the task."""
    runner = _runner()

    @runner.stage(STAGE)
    def complete(lr: LabelRowV2) -> str:
        behaviour.record(lr.data_title)
        return PATHWAY

    return runner


def task_only_runner() -> QueueRunner:
    """Needs nothing but the task: no label-row metadata in the envelopes."""
    runner = _runner()

    @runner.stage(STAGE)
    def complete(task: AgentTask) -> str:
        behaviour.record(task.data_title)
        return PATHWAY

    return runner


def client_metadata_runner() -> QueueRunner:
    """Lists label rows with client metadata (big metadata makes big envelopes)."""
    runner = _runner()

    @runner.stage(
        STAGE,
        label_row_metadata_include_args=LabelRowMetadataIncludeArgs(include_client_metadata=True),
    )
    def complete(lr: LabelRowV2) -> str:
        behaviour.record(lr.data_title)
        return PATHWAY

    return runner


def bad_pathway_runner() -> QueueRunner:
    """Returns a pathway the stage does not have: a failure no retry can fix."""
    runner = _runner()

    @runner.stage(STAGE)
    def wrong(task: AgentTask) -> str:
        behaviour.record(task.data_title)
        return "no-such-pathway"

    return runner


def leaky_runner() -> QueueRunner:
    """Raises an error whose text contains private key material."""
    runner = _runner()

    @runner.stage(STAGE)
    def leak(task: AgentTask) -> str:
        behaviour.record(task.data_title)
        raise RuntimeError(f"could not sign with {FAKE_KEY}")

    return runner


def not_a_runner() -> str:
    return "not a runner"
