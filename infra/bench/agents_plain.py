"""Stage functions without media, loaded by the benchmarks through AGENT_MODULE.

Each attribute is a factory (the consumer's loader calls it once per process) that builds a
``QueueRunner`` for the project in PROJECT_HASH, because every measurement seeds its own project.
They import what such an agent imports: the encord SDK types and agent_core; never numpy or cv2.
"""

from __future__ import annotations

import os

from encord.objects import LabelRowV2
from encord.storage import StorageItem
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner, TaskAgentReturnStruct
from infra.bench.stage_work import (
    MODEL_MS_ENV,
    PATHWAY,
    PRIORITY,
    QUALITY,
    STAGE,
    model_call,
    set_quality,
)

__all__ = ["MODEL_MS_ENV", "PATHWAY", "PRIORITY", "QUALITY", "STAGE", "model_call", "set_quality"]

# The request-count kinds, in table order: what each stage function needs.
KINDS = ("task_only", "label_row", "label_row_storage", "save_priority")


def _runner() -> QueueRunner:
    return QueueRunner(project_hash=os.environ["PROJECT_HASH"])


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
