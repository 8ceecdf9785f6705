"""The example agent: two vision stages of the demo project (``agentkit demo`` runs it).

Workflow of the emulator's ``demo`` fixture (see infra/emulator/README.md)::

    START -> pre-label --annotate--> Annotate -> Review -> quality-check --accept--> Complete
                       --skip------> Complete                           --reject--> Annotate

``pre-label`` looks at the first frame of each image or video: it records an image-quality
classification, gives busy frames a higher priority, and sends frames with enough structure to
human annotation while plain ones skip it. ``quality-check`` checks that each existing bounding
box actually frames something (edge density inside the box) and accepts or rejects the labels.

One case fails on purpose, every time: a data title containing ``EXAMPLE_FAIL_MARKER`` (default
``_0013``; the demo fixture has ``frame_0013.jpg`` and ``qc_0013.jpg``) raises, so that the
demo shows retries, the dead-letter queue and ``agentkit dlq replay``. Set the variable to an empty
string to turn it off.

Deploy it with ``AGENT_MODULE=agents.example:runner`` and ``PROJECT_HASH`` set.
"""

from __future__ import annotations

import os
from typing import Annotated

import cv2
import numpy as np
from encord.objects import Classification, LabelRowV2, Option
from encord.objects.coordinates import BoundingBoxCoordinates
from encord.workflow.stages.agent import AgentTask
from numpy.typing import NDArray

from agent_core import Depends, QueueRunner
from agent_core.dependencies import dep_single_frame
from agent_core.exceptions import ConfigurationError
from agent_core.models import TaskAgentReturnStruct

# Share of edge pixels above which a frame is "busy" enough to be worth a human's time.
BUSY_EDGE_DENSITY = 0.012
# A box framing real content has at least this share of edge pixels inside it.
BOX_MIN_EDGE_DENSITY = 0.005
# Mean brightness (0..1) of a well-exposed frame.
MIN_GOOD_BRIGHTNESS = 0.35
MAX_GOOD_BRIGHTNESS = 0.9
QUALITY_CLASSIFICATION = "Quality"


def _project_hash() -> str:
    value = os.environ.get("PROJECT_HASH", "").strip()
    if not value:
        raise ConfigurationError(
            "agents.example needs PROJECT_HASH: the hash of the Encord project to run on "
            "(`agentkit demo` sets it for the emulator's demo project)."
        )
    return value


runner = QueueRunner(project_hash=_project_hash())


class SimulatedModelError(RuntimeError):
    """The deliberate failure of the demo: the 'model' cannot handle this item."""


def _fail_if_marked(task: AgentTask) -> None:
    marker = os.environ.get("EXAMPLE_FAIL_MARKER", "_0013")
    if marker and marker in task.data_title:
        raise SimulatedModelError(
            f"the model cannot process {task.data_title!r} (simulated failure: titles containing "
            f"{marker!r} always fail; unset EXAMPLE_FAIL_MARKER and replay the DLQ to fix it)"
        )


def edge_density(frame: NDArray[np.uint8]) -> float:
    """Share of pixels on an edge (Canny on the grey image): 0 for a flat frame."""
    if frame.size == 0:
        return 0.0
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 80, 160)
    return float(np.count_nonzero(edges)) / float(edges.size)


def _set_quality(lr: LabelRowV2, answer: str) -> None:
    classification = lr.ontology_structure.get_child_by_title(
        QUALITY_CLASSIFICATION, type_=Classification
    )
    option = classification.get_child_by_title(answer, type_=Option)
    # A redelivered task must not stack a second answer on the first one.
    for existing in lr.get_classification_instances(filter_ontology_classification=classification):
        lr.remove_classification(existing)
    instance = classification.create_instance()
    instance.set_answer(option)
    instance.set_for_frames(0)
    lr.add_classification_instance(instance)


@runner.stage("pre-label")
def pre_label(
    task: AgentTask,
    lr: LabelRowV2,
    frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)],
) -> TaskAgentReturnStruct:
    _fail_if_marked(task)
    density = edge_density(frame)
    brightness = float(frame.mean()) / 255.0
    busy = density >= BUSY_EDGE_DENSITY
    _set_quality(lr, "good" if MIN_GOOD_BRIGHTNESS <= brightness <= MAX_GOOD_BRIGHTNESS else "bad")
    return TaskAgentReturnStruct(
        pathway="annotate" if busy else "skip",
        label_row=lr,
        # Busier frames take annotators longer and teach more: look at them first.
        label_row_priority=round(min(1.0, density / (2 * BUSY_EDGE_DENSITY)), 3),
    )


@runner.stage("quality-check")
def quality_check(
    task: AgentTask,
    lr: LabelRowV2,
    frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)],
) -> str:
    _fail_if_marked(task)
    height, width = frame.shape[:2]
    boxes: list[BoundingBoxCoordinates] = []
    for obj in lr.get_object_instances():
        for annotation in obj.get_annotations():
            if annotation.frame == 0 and isinstance(annotation.coordinates, BoundingBoxCoordinates):
                boxes.append(annotation.coordinates)
    if not boxes:
        return "reject"  # nothing labelled: back to annotation
    for box in boxes:
        x0, y0 = int(box.top_left_x * width), int(box.top_left_y * height)
        x1, y1 = (
            int((box.top_left_x + box.width) * width),
            int((box.top_left_y + box.height) * height),
        )
        if edge_density(frame[max(0, y0) : y1, max(0, x0) : x1]) < BOX_MIN_EDGE_DENSITY:
            return "reject"
    return "accept"
