"""What every benchmark stage function does, the kit's and the peer's alike: a simulated model
call and a real label change. Imports only the encord SDK, so that the peer's environment
(``peer_worker``) runs exactly the same work as the kit's agents (``agents_plain``).
"""

from __future__ import annotations

import os
import time

from encord.objects import Classification, LabelRowV2, Option

STAGE = "Agent 1"
PATHWAY = "complete"
QUALITY = "Quality"
PRIORITY = 0.9
# Milliseconds one simulated model call waits (an inference endpoint's latency), read per call.
MODEL_MS_ENV = "AGENTKIT_BENCH_MODEL_MS"


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
