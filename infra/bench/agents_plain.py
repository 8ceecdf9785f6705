"""Stage functions without media, loaded by the benchmarks through AGENT_MODULE.

Each attribute is a factory (the consumer's loader calls it once per process) that builds a
``QueueRunner`` for the project in PROJECT_HASH, because every measurement seeds its own project.
They import what such an agent imports: the encord SDK types and agent_core; never numpy or cv2.
"""

from __future__ import annotations

import os
import time

from encord.objects import Classification, LabelRowV2, Option
from encord.storage import StorageItem
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner, TaskAgentReturnStruct

STAGE = "Agent 1"
PATHWAY = "complete"
QUALITY = "Quality"
PRIORITY = 0.9
# Milliseconds one simulated model call waits (an inference endpoint's latency), read per call.
MODEL_MS_ENV = "AGENTKIT_BENCH_MODEL_MS"

# The request-count kinds, in table order: what each stage function needs.
KINDS = ("task_only", "label_row", "label_row_storage", "save_priority")


def _runner() -> QueueRunner:
    return QueueRunner(project_hash=os.environ["PROJECT_HASH"])


def set_quality(lr: LabelRowV2, answer: str = "good") -> None:
    """Replace the frame-0 answer of the ``Quality`` classification (a real label change)."""
    classification = lr.ontology_structure.get_child_by_title(QUALITY, type_=Classification)
    option = classification.get_child_by_title(answer, type_=Option)
    for existing in lr.get_classification_instances(filter_ontology_classification=classification):
        lr.remove_classification(existing)
    instance = classification.create_instance()
    instance.set_answer(option)
    instance.set_for_frames(0)
    lr.add_classification_instance(instance)


def model_call() -> None:
    """Stand-in for a call to a model endpoint: waits, like network I/O, without using the CPU."""
    milliseconds = float(os.environ.get(MODEL_MS_ENV) or 0)
    if milliseconds > 0:
        time.sleep(milliseconds / 1000.0)


def task_only() -> QueueRunner:
    """(a) needs only the task."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(task: AgentTask) -> str:
        return PATHWAY if task.data_hash else "missing"

    return runner


def label_row() -> QueueRunner:
    """(b) reads the label row."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(lr: LabelRowV2) -> str:
        return PATHWAY if lr.is_labelling_initialised else "missing"

    return runner


def label_row_storage() -> QueueRunner:
    """(c) reads the label row and the storage item behind it."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(lr: LabelRowV2, item: StorageItem) -> str:
        return PATHWAY if lr.is_labelling_initialised and item.uuid else "missing"

    return runner


def save_priority() -> QueueRunner:
    """(d) changes the labels and returns them to be saved, with a new priority."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(lr: LabelRowV2) -> TaskAgentReturnStruct:
        set_quality(lr)
        return TaskAgentReturnStruct(pathway=PATHWAY, label_row=lr, label_row_priority=PRIORITY)

    return runner


def pipeline_stage(lr: LabelRowV2) -> TaskAgentReturnStruct:
    """The end-to-end function: a model call per task, then a label save and a pathway."""
    model_call()
    set_quality(lr)
    return TaskAgentReturnStruct(pathway=PATHWAY, label_row=lr)


def pipeline() -> QueueRunner:
    runner = _runner()
    runner.stage(STAGE)(pipeline_stage)
    return runner
